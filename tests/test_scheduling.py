"""The xdist module order (tests/fixtures/scheduling.py): one module starts the tiny model's cold run, the
modules that need no tiny model come next, then those needing only the trained model, then the rest."""

from __future__ import annotations

from tests.fixtures.scheduling import scope, unit_order


def test_one_module_starts_the_cold_run_while_the_light_ones_go_to_the_other_worker():
    modules = {"a_light.py": {"tmp_path"}, "b_run.py": {"tiny_assets", "tiny_full_run"},
               "c_trained.py": {"tiny_assets"}, "d_run_big.py": {"tiny_assets", "tiny_full_run", "board"},
               "e_light_big.py": set(), "f_trained_big.py": {"tiny_assets", "tmp_path"}}
    counts = {"a_light.py": 3, "b_run.py": 5, "c_trained.py": 2, "d_run_big.py": 9, "e_light_big.py": 7,
              "f_trained_big.py": 4}
    assert unit_order(modules, counts) == ["d_run_big.py", "e_light_big.py", "a_light.py", "f_trained_big.py",
                                             "c_trained.py", "b_run.py"]


def test_without_a_cold_run_module_the_light_ones_lead():
    assert unit_order({"x.py": {"tiny_assets"}, "y.py": set()}, {"x.py": 9, "y.py": 1}) == ["y.py", "x.py"]


def test_a_test_class_is_its_own_unit_as_xdist_splits_it():
    assert scope("tests/test_x.py::test_a[p-1]") == "tests/test_x.py"
    assert scope("tests/test_x.py::TestCompiled::test_b") == "tests/test_x.py::TestCompiled"
