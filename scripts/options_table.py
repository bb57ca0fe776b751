"""The README's option tables, made from the driver's own option lists (which the C++
builds from each option's one declaration), so that the documentation cannot drift.

    /usr/bin/python3 scripts/options_table.py --write README.md   # regenerate the tables
    /usr/bin/python3 scripts/options_table.py --check README.md   # exit 1 if they differ

The plugin is taken from GDAL_DRIVER_PATH (default: build/).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parents[1]
TABLES = {  # README marker name -> driver metadata item
    "creation-options": "DMD_CREATIONOPTIONLIST",
    "open-options": "DMD_OPENOPTIONLIST",
}


def _driver():
    os.environ.setdefault("GDAL_DRIVER_PATH", str(ROOT / "build"))
    from osgeo import gdal
    gdal.AllRegister()
    driver = gdal.GetDriverByName("NSAT")
    if driver is None:
        raise SystemExit(f"no NSAT driver in GDAL_DRIVER_PATH={os.environ['GDAL_DRIVER_PATH']}")
    return driver


def _number(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


def _values(option: ET.Element) -> str:
    kind, default = option.get("type"), option.get("default")
    listed = [value.text for value in option.findall("Value")]
    if listed:
        return ", ".join(f"`{v}` (default)" if v == default else f"`{v}`" for v in listed)
    if kind == "int":
        text = "an integer"
        if option.get("min") is not None:
            text = f"{_number(option.get('min'))} … {_number(option.get('max'))}"
    elif kind == "float":
        text = "a number"
    else:
        text = "text"
    return text + (f" (default `{default}`)" if default else "")


def table(metadata_item: str) -> str:
    """The markdown table of one option list."""
    root = ET.fromstring(_driver().GetMetadataItem(metadata_item))
    rows = ["| option | values | meaning |", "|---|---|---|"]
    for option in root.findall("Option"):
        meaning = option.get("description").replace("|", "\\|")
        rows.append(f"| `{option.get('name')}` | {_values(option)} | {meaning} |")
    return "\n".join(rows) + "\n"


def _markers(name: str):
    return (f"<!-- {name}: made by scripts/options_table.py from the driver; do not edit -->\n",
            f"<!-- end {name} -->\n")


def render(readme: str) -> str:
    """`readme` with every marked table replaced by the driver's."""
    for name, item in TABLES.items():
        begin, end = _markers(name)
        start, stop = readme.index(begin) + len(begin), readme.index(end)
        readme = readme[:start] + table(item) + readme[stop:]
    return readme


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="README")
    mode.add_argument("--check", metavar="README")
    args = parser.parse_args(argv)
    path = pathlib.Path(args.write or args.check)
    current = path.read_text(encoding="utf-8")
    wanted = render(current)
    if args.write:
        path.write_text(wanted, encoding="utf-8")
        return 0
    if wanted != current:
        print(f"{path}: the option tables differ from the driver's; run "
              f"scripts/options_table.py --write {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
