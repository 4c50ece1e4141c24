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


def test_heavy_units_lead_their_group_so_the_short_ones_fill_the_end():
    units = {"light_many.py": set(), "light_heavy.py": set(), "run_many.py": {"tiny_full_run"},
             "run_heavy.py": {"tiny_full_run"}, "run_starter.py": {"tiny_full_run"}}
    counts = {"light_many.py": 20, "light_heavy.py": 3, "run_many.py": 15, "run_heavy.py": 2, "run_starter.py": 30}
    heavy = {"light_heavy.py": 30.0, "run_heavy.py": 30.0}
    # the starter is the heavy cold-run unit; the rest of each group: heavy first, then by test count
    assert unit_order(units, counts, heavy) == ["run_heavy.py", "light_heavy.py", "light_many.py", "run_starter.py",
                                                "run_many.py"]
    assert unit_order(units, counts) == ["run_starter.py", "light_many.py", "light_heavy.py", "run_many.py",
                                         "run_heavy.py"]


def test_heavy_units_go_longest_first_by_their_stated_seconds():
    units = {"run_a.py": {"tiny_full_run"}, "run_b.py": {"tiny_full_run"}, "run_c.py": {"tiny_full_run"},
             "run_light.py": {"tiny_full_run"}}
    counts = {"run_a.py": 9, "run_b.py": 3, "run_c.py": 4, "run_light.py": 12}
    # the 3-test module of 40 s before the 9-test one of 12 s; the unmarked one last, whatever its count
    assert unit_order(units, counts, {"run_a.py": 12.0, "run_b.py": 40.0, "run_c.py": 25.0}) == [
        "run_b.py", "run_c.py", "run_a.py", "run_light.py"]


def test_the_marker_states_its_seconds_and_a_bare_one_counts_as_the_default():
    """The collection hook itself, on items as pytest gives them (node id, fixture names, closest marker)."""
    import pytest

    from tests.fixtures.scheduling import pytest_collection_modifyitems

    class Item:
        def __init__(self, nodeid, marker=None):
            self.nodeid, self.fixturenames, self.marker = nodeid, ["tmp_path"], marker

        def get_closest_marker(self, name):
            return self.marker if name == "heavy" else None

    heavy = pytest.mark.heavy
    items = [Item("test_a.py::x", heavy(seconds=5).mark), Item("test_a.py::y", heavy(seconds=5).mark),
             Item("test_b.py::z", heavy.mark), Item("test_c.py::w", heavy(seconds=50).mark),
             Item("test_d.py::v"), Item("test_d.py::u"), Item("test_d.py::t")]
    pytest_collection_modifyitems(None, items)
    assert [i.nodeid for i in items] == ["test_c.py::w", "test_b.py::z", "test_a.py::x", "test_a.py::y",
                                         "test_d.py::v", "test_d.py::u", "test_d.py::t"]


def test_auto_starts_one_worker_more_than_the_cores(monkeypatch):
    from types import SimpleNamespace

    from tests.fixtures.scheduling import auto_workers, pytest_xdist_auto_num_workers, usable_cores

    assert [auto_workers(n) for n in (0, 1, 2, 8)] == [2, 2, 3, 9]
    auto = SimpleNamespace(option=SimpleNamespace(numprocesses="auto"))
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    assert pytest_xdist_auto_num_workers(auto) == usable_cores() + 1
    logical = SimpleNamespace(option=SimpleNamespace(numprocesses="logical"))
    assert pytest_xdist_auto_num_workers(logical) is None  # xdist counts the logical CPUs itself
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "5")
    assert pytest_xdist_auto_num_workers(auto) is None  # left to xdist, which reads the variable
