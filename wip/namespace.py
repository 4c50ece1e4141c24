"""Rewrite imports so the three top-level folders install as edgepipe (pipeline/), edgepipe.targets (targets/)
and edgepipe.calibration (calibration/)."""
import re, subprocess, sys
from pathlib import Path

ROOT = Path(sys.argv[1])
PFX = {"pipeline": "edgepipe", "targets": "edgepipe.targets", "calibration": "edgepipe.calibration"}


def map_mod(mod: str) -> str:
    head, _, rest = mod.partition(".")
    if head in PFX:
        return PFX[head] + ("." + rest if rest else "")
    return mod


FROM_RE = re.compile(r"^(?P<ind>[ \t]*)from (?P<mod>(?:pipeline|targets|calibration)(?:\.[\w.]+)?) import ")
IMPORT_RE = re.compile(r"^(?P<ind>[ \t]*)import (?P<mods>(?:pipeline|targets|calibration)[\w., ]*?)(?P<alias> as \w+)?(?P<rest>\s*(#.*)?)$")
STR_RE = re.compile(r"""(?<=["'\s`(=:])((?:pipeline|targets|calibration)(?:\.[a-z_]\w*)+)(?=[:"'\s`),]|$)""")


def rewrite_line(line: str) -> str:
    m = FROM_RE.match(line)
    if m:
        return line[:m.start("mod")] + map_mod(m["mod"]) + line[m.end("mod"):]
    m = IMPORT_RE.match(line)
    if m:
        mods = [x.strip() for x in m["mods"].split(",")]
        if m["alias"]:
            (mod,) = mods
            new = map_mod(mod)
            parent, _, leaf = new.rpartition(".")
            alias = m["alias"]
            return f"{m['ind']}from {parent} import {leaf}{alias}{m['rest']}" if "." not in mod else \
                f"{m['ind']}import {new}{alias}{m['rest']}"
        out = []
        for mod in mods:
            if "." in mod:
                raise SystemExit(f"dotted import without alias needs a hand edit: {line!r}")
            new = map_mod(mod)
            parent, _, leaf = new.rpartition(".")
            out.append(f"{m['ind']}from {parent} import {leaf}" if parent else f"{m['ind']}import {new}")
        out[-1] += m["rest"]
        return "\n".join(out)
    return line


def rewrite(text: str) -> str:
    text = "\n".join(rewrite_line(l) for l in text.split("\n"))
    def sub(m):
        s = m.group(1)
        if s.rsplit(".", 1)[1] in ("yaml", "yml", "json", "py", "md", "txt", "html", "toml", "xml", "csv"):
            return s  # a file name such as pipeline.yaml, not a module
        return map_mod(s)

    return STR_RE.sub(sub, text)


if __name__ == "__main__":
    files = subprocess.run(["git", "ls-files", "*.py", "*.toml", "*.ini", "*.md", ".ci/run"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    n = 0
    for f in files:
        if f.startswith("tests/device/") or f.endswith("device_runner.py"):
            continue
        p = ROOT / f
        t = p.read_text()
        new = rewrite(t)
        if new != t:
            p.write_text(new)
            n += 1
    print(n, "files rewritten")
