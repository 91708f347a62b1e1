#!/usr/bin/env python3
"""Writes a JSON list of the string literals in the test suites of granit-parser, saphyr-parser
and yaml-rust2 (from cargo's registry): the edge cases the parsers' authors wrote down, as a
corpus for `bulkhead-parser-study diff`. Usage: corpus.py OUT.json"""
import glob, json, os, re, sys

registry = os.path.expanduser("~/.cargo/registry/src/*")
dirs = []
for crate in ("granit-parser-2.*", "saphyr-parser-0.3.*", "yaml-rust2-0.13.*"):
    dirs += glob.glob(f"{registry}/{crate}/tests")
texts = set()
for d in dirs:
    for path in glob.glob(f"{d}/*.rs"):
        source = open(path, encoding="utf-8").read()
        for m in re.finditer(r'r(#*)"(.*?)"\1', source, re.S):
            texts.add(m.group(2))
        for m in re.finditer(r'(?<![r#\w])"((?:[^"\\]|\\.)*)"', source, re.S):
            s = re.sub(r"\\u\{([0-9a-fA-F]+)\}",
                       lambda u: chr(int(u.group(1), 16)) if not 0xD800 <= int(u.group(1), 16) <= 0xDFFF else "",
                       m.group(1))
            s = re.sub(r"\\\n\s*", "", s)
            try:
                s = s.encode("utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")
            except (UnicodeDecodeError, UnicodeEncodeError):
                continue
            texts.add(s)
texts.discard("")
json.dump(sorted(texts), open(sys.argv[1], "w"))
print(f"{len(texts)} inputs from {len(dirs)} test directories")
