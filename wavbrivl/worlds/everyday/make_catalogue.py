"""Maintenance: build the committed ``catalogue.json``, ``corpus.json`` and ``packages.json`` from the research.

Not used at run time. The research (Debian packages listed and matched to concepts by hand-written rules,
independent sources found by audio fingerprints, licences looked up per file in each package's DEP-5 copyright
file) produced a large catalogue; this script keeps what the world needs and records the decisions taken here:

* concepts: heard = every research concept with >= 3 independent sources; never-heard = the 16 in
  :data:`NEVER_HEARD` (pictures and captions only; their recordings become never-heard test clips);
* a file listed under two concepts is kept under one: recordings under the concept with fewer independent
  sources (so a never-heard test clip is never a training clip, and the fillets-ng "thing" sounds stay with
  clock/phone/snoring rather than speech); pictures under the concept they matched by primary keyword, then the
  others that matched it equally well in turn (car and car horn, door and
  door creak, clapping and applause share their drawings out: they show the same things);
* pictures whose titles only mention the concept in passing are dropped (:data:`PICTURE_EXCLUDE`);
* licences are shortened to an identifier; the long explanations go to ``packages.json`` (``licence_notes``);
* the corpus is the research's "real/game sound effect" class, with licences looked up in the copyright files.

    python -m wavbrivl.worlds.everyday.make_catalogue --research DIR --extracted DIR --copyright DIR
"""
from __future__ import annotations

import argparse
import collections
import fnmatch
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .catalogue import GLYPH_MARK, HERE, MD5_CHARS, RENDER_MARK, copyright_path, local_path

NEVER_HEARD = ("goat", "goose", "tiger", "bear", "whale", "camel", "door creak", "rocket", "toilet flush", "kettle",
               "door knock", "heartbeat", "penguin", "rabbit", "snake", "bicycle")
PICTURE_EXCLUDE = {  # concept -> title pattern of pictures that do not show it
    "car horn": r"face with horns",
    "electric guitar": r"^(?!.*guitar)",  # "electric" also matched plugs, bulbs and torches
    "heartbeat": r"couple|face|cat |teddy|nosmoke|ribbon|bullet|decoration|ornament|hands|ballon|tiles|arrow|cluster|highlight",
}
MANUAL_LICENCES = {  # packages whose copyright file is not machine-readable (read by hand in the research)
    "fillets-ng-data": "GPL-2+", "freedink-data": "zlib-style", "nexuiz-data": "GPL-2+", "pingus-data": "GPL-2+",
    "plee-the-bear-data": "CC-BY-SA-3.0", "searchandrescue-data": "GPL", "wesnoth-1.16-data": "GPL-2+",
    "warmux-data": "GPL-2+", "tuxtype-data": "GPL-2+", "crrcsim-data": "GPL-2+",
}
OPENTTD_LICENCES = {"Creative Commons Zero 1.0": "CC0-1.0", "Creative Commons Attribution 3.0 Unported": "CC-BY-3.0",
                    "Creative Commons Attribution-ShareAlike 3.0 Unported": "CC-BY-SA-3.0"}


def short_licence(text: str) -> str:
    """``"CC-BY-SA-3.0 (Art4Apps; ...)"`` → ``"CC-BY-SA-3.0"``; OpenTTD entries → the entry's own licence."""
    if "this file:" in text:
        return OPENTTD_LICENCES.get(text.split("this file:", 1)[1].strip(), text)
    if text.startswith("Symbola"):
        return "Symbola-free-for-any-use"
    head = re.split(r" \(| per | with ", text, maxsplit=1)[0].strip()
    return {"CC-BY-SA-3": "CC-BY-SA-3.0", "Public Domain": "public-domain", "CC0": "CC0-1.0"}.get(head, head)


# ------------------------------------------------------------------------------------------- DEP-5 look-up
def dep5_stanzas(text: str) -> list[tuple[list[str], str, list[str]]]:
    """``(globs, licence, copyright lines)`` of each ``Files:`` stanza of a machine-readable copyright file."""
    stanzas = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            m = re.match(r"^([A-Za-z][A-Za-z0-9-]*):\s*(.*)$", line)
            if m and not line[0].isspace():
                key = m.group(1).lower()
                fields[key] = m.group(2)
            elif key:
                fields[key] += "\n" + line.strip()
        if "files" in fields:
            licence = next((x.strip() for x in fields.get("license", "").split("\n") if x.strip()), "")
            holders = [x.strip() for x in fields.get("copyright", "").split("\n") if x.strip()]
            stanzas.append((fields["files"].split(), licence, holders))
    return stanzas


def dep5_lookup(stanzas: list[tuple[list[str], str, list[str]]], path: str) -> tuple[str, list[str]] | None:
    """The most specific stanza matching ``path``; installed paths are matched by their trailing components."""
    parts = [p for p in path.replace("!", "/").split("/") if p]
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    best, score = None, -1.0
    for globs, licence, holders in stanzas:
        for g in globs:
            if g.startswith("debian/"):
                continue
            gparts = g.split("/")
            for k, sub in enumerate(["/".join(gparts[i:]) for i in range(max(1, len(gparts) - 1))]):
                if any(fnmatch.fnmatchcase(t, sub) for t in tails):
                    s = len(re.sub(r"[*?\[\]]", "", sub)) + (0.5 if k == 0 else 0)
                    if s >= score:
                        best, score = (licence, holders), s
                    break
    return best


def corpus_licence(package: str, path: str, copyright_dir: Path, openttd_index: dict[str, str]) -> tuple[str, list[str]]:
    if package == "openttd-opensfx":
        entry = openttd_index.get(path.rsplit("/", 1)[-1], "")
        m = re.search(r"License: (.+?)\.$", entry)
        return OPENTTD_LICENCES.get(m.group(1) if m else "", "CC-BY-SA-3.0"), [entry]
    text_file = copyright_dir / f"{package}.txt"
    text = text_file.read_text(errors="replace") if text_file.exists() else ""
    if package in MANUAL_LICENCES or not text.lower().lstrip().startswith("format:"):
        return MANUAL_LICENCES.get(package, f"see {copyright_path(package)}"), []
    query = path
    if package == "lugaru-data":
        query = path.replace("usr/share/games/lugaru/", "Data/")
    if package.startswith("hydrogen-drumkits") and (m := re.search(r"drumkits/([^/]+)/", path)):
        query = f"drumkits/{m.group(1)}.h2drumkit"
    hit = dep5_lookup(dep5_stanzas(text), query)
    return (short_licence(hit[0]), hit[1][:3]) if hit else (f"see {copyright_path(package)}", [])


# ------------------------------------------------------------------------------------------- concepts
def _md5(path: Path) -> str | None:
    return hashlib.md5(path.read_bytes()).hexdigest()[:MD5_CHARS] if path.is_file() else None


def select_concepts(research: dict[str, Any]) -> list[dict[str, Any]]:
    heard = [c for c in research["concepts"] if c["n_independent_sources"] >= 3]
    pool = {c["name"]: c for c in research["concepts"] + research["never_heard_candidates"]}
    missing = [n for n in NEVER_HEARD if n not in pool]
    if missing:
        raise SystemExit(f"never-heard concepts not in the research catalogue: {missing}")
    return [dict(c, heard=True) for c in heard] + [dict(pool[n], heard=False) for n in NEVER_HEARD]


def resolve_shared(concepts: list[dict[str, Any]]) -> None:
    """Keep each recording and picture under one concept (see the module docstring)."""
    def key(f: dict[str, Any]) -> tuple[str, str]:
        return f["package"], f["path"]

    owner_audio: dict[tuple[str, str], dict[str, Any]] = {}
    for c in sorted(concepts, key=lambda c: c["n_independent_sources"]):
        for a in c["audio"]:
            owner_audio.setdefault(key(a), c)
    candidates: dict[tuple[str, str], list[tuple[bool, int]]] = collections.defaultdict(list)
    for i, c in enumerate(concepts):
        for f in c["images"]:
            candidates[key(f)].append((f["match"] != "primary keyword", i))
    owned = collections.Counter()
    owner_pic: dict[tuple[str, str], int] = {}
    for k, cands in sorted(candidates.items(), key=lambda kv: (len(kv[1]) > 1, kv[0])):  # uncontested first
        best = min(rank for rank, _ in cands)
        tied = [i for rank, i in cands if rank == best]
        owner_pic[k] = min(tied, key=lambda i: (owned[i], i))  # equally good matches are shared out in turn
        owned[owner_pic[k]] += 1
    for c in concepts:
        pattern = PICTURE_EXCLUDE.get(c["name"])
        c["audio"] = [a for a in c["audio"] if owner_audio[key(a)] is c]
        c["images"] = [f for f in c["images"] if concepts[owner_pic[key(f)]] is c
                       and not (pattern and re.search(pattern, f.get("title", ""), re.I))]


def committed_captions() -> dict[str, str]:
    """The hand-written captions ("a dog barking") of the committed catalogue: the research has none, so a
    rebuilt catalogue keeps them (a new concept needs one written in)."""
    return {c["name"]: c.get("caption", "") for c in json.loads((HERE / "catalogue.json").read_text())["concepts"]}


def compact_concepts(concepts: list[dict[str, Any]], extracted: Path) -> list[dict[str, Any]]:
    captions = committed_captions()
    out = []
    for c in concepts:
        audio = [{"package": a["package"], "version": a["version"], "path": a["path"], "source": a["independent_source"],
                  "licence": short_licence(a["licence"]), "kind": a["kind"], "seconds": round(a.get("seconds", 0.0), 2),
                  **({"md5": a["md5"][:MD5_CHARS]} if a.get("md5") else {}), "_copyright": a.get("copyright", [])}
                 for a in c["audio"]]
        pictures = []
        for p in c["images"]:
            md5 = None if GLYPH_MARK in p["path"] else _md5(local_path(extracted, p["package"], p["path"]))
            pictures.append({"package": p["package"], "version": p["version"], "path": p["path"],
                             "licence": short_licence(p["licence"]), "kind": p["kind"], "title": p.get("title", ""),
                             **({"md5": md5} if md5 else {}), "_copyright": p.get("copyright", [])})
        sources = {a["source"] for a in audio}
        test = c.get("suggested_test_source") if c["heard"] else None
        if c["heard"] and (test not in sources or len(sources) < 3):
            raise SystemExit(f"{c['name']}: lost its test source or its third source when shared files were resolved")
        out.append({"name": c["name"], "aliases": c["aliases"], "caption": captions.get(c["name"], ""), "group": c["group"],
                    "live": c["live"],
                    "heard": c["heard"], "test_source": test, "doubts": c.get("doubts", ""),
                    "audio": audio, "pictures": pictures})
    return out


def attribution(concepts: list[dict[str, Any]], corpus: list[dict[str, Any]], research_packages: dict[str, Any],
                long_licences: dict[str, set[str]]) -> dict[str, Any]:
    """``packages.json``: per package version, .deb size, copyright-file licences, attribution lines, licence notes.

    A file whose copyright holders differ from its package's usual ones keeps them as its own ``attribution``."""
    files = [f for c in concepts for f in c["audio"] + c["pictures"]] + corpus
    usual: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for f in files:
        usual[f["package"]][tuple(f["_copyright"])] += 1
    packages: dict[str, Any] = {}
    for f in files:
        pkg = f["package"]
        holders = f.pop("_copyright")
        if holders and tuple(holders) != usual[pkg].most_common(1)[0][0]:
            f["attribution"] = "; ".join(holders)
        info = research_packages[pkg]
        entry = packages.setdefault(pkg, {"version": info["version"], "deb_mb": info.get("deb_MB"),
                                          "licences_in_copyright_file": info.get("licences_in_copyright_file", []),
                                          "attribution": [], "licence_notes": sorted(long_licences.get(pkg, ()))})
        for h in holders:
            if h not in entry["attribution"] and len(entry["attribution"]) < 40:
                entry["attribution"].append(h)
    return dict(sorted(packages.items()))


def pack_corpus(corpus: list[dict[str, Any]]) -> dict[str, Any]:
    """Corpus entries grouped by package, paths relative to the package's common prefix (half the size)."""
    by_pkg: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for e in corpus:
        by_pkg[e["package"]].append(e)
    packed: dict[str, Any] = {}
    for pkg, entries in sorted(by_pkg.items()):
        paths = [e["path"] for e in entries]
        prefix = os.path.commonprefix(paths) if len(paths) > 1 else paths[0].rsplit("/", 1)[0] + "/"
        prefix = prefix[: max(prefix.rfind("/"), prefix.rfind("!")) + 1]
        licence = collections.Counter(e["licence"] for e in entries).most_common(1)[0][0]
        rows = []
        for e in sorted(entries, key=lambda e: e["path"]):
            row = [e["path"][len(prefix):], e["seconds"], e["md5"]]
            if e["licence"] != licence or e.get("attribution"):
                row.append(e["licence"])
            if e.get("attribution"):
                row.append(e["attribution"])
            rows.append(row)
        packed[pkg] = {"version": entries[0]["version"], "prefix": prefix, "licence": licence, "files": rows}
    return {"columns": ["path", "seconds", "md5", "licence", "attribution"], "packages": packed}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--research", type=Path, required=True, help="folder with the research catalogue.json etc.")
    ap.add_argument("--extracted", type=Path, required=True, help="the research extraction (for picture md5s)")
    ap.add_argument("--extracted-corpus", type=Path, required=True, help="the research corpus extraction (OpenTTD index)")
    ap.add_argument("--copyright", type=Path, required=True, help="folder of PKG.txt copyright files")
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args(argv)
    research = json.loads((a.research / "catalogue.json").read_text())
    research_packages = json.loads((a.research / "packages.json").read_text())
    concepts = select_concepts(research)
    long_licences: dict[str, set[str]] = collections.defaultdict(set)
    for c in concepts:
        for f in c["audio"] + c["images"]:
            if short_licence(f["licence"]) != f["licence"]:
                long_licences[f["package"]].add(f["licence"])
    resolve_shared(concepts)
    compact = compact_concepts(concepts, a.extracted)

    index_file = "usr/share/games/openttd/baseset/opensfx/opensfx.cat.d/index.json"
    openttd_index = json.loads((a.extracted_corpus / "openttd-opensfx" / index_file).read_text())
    corpus = []
    for e in json.loads((a.research / "unlabeled_corpus.json").read_text()):
        if e["cls"] != "sfx":
            continue
        path = re.sub(r"(\.(zip|pk3|wz|rcc|cat))/", r"\1!", e["path"], count=1)
        if path.endswith(".wav") and ".cat!" in path:
            path = path.rsplit("!", 1)[0] + "!#" + str(int(path.rsplit("!", 1)[1][:-4]))
        licence, holders = corpus_licence(e["package"], path, a.copyright, openttd_index)
        corpus.append({"package": e["package"], "version": research_packages[e["package"]]["version"], "path": path,
                       "licence": licence, "seconds": round(e["seconds"], 2), "md5": e["md5"][:MD5_CHARS], "_copyright": holders})
    packages = attribution(compact, corpus, research_packages, long_licences)
    header = {"format": 1, "debian_suite": research.get("debian_suite", ""),
              "path_notation": {"plain": "path inside the .deb", "member": "<container>!<member> (zip/pk3/wz/rcc; "
                                "opensfx.cat!#NN = OpenTTD entry NN)", "render": f"<sf2>{RENDER_MARK}kind=,bank=,program=,"
                                "note=,seconds=,velocity=", "glyph": f"<font>{GLYPH_MARK}XXXX"}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "catalogue.json").write_text(json.dumps(dict(header, concepts=compact), separators=(",", ":"), ensure_ascii=False))
    (a.out / "corpus.json").write_text(json.dumps(pack_corpus(corpus), separators=(",", ":"), ensure_ascii=False))
    (a.out / "packages.json").write_text(json.dumps(packages, indent=1, ensure_ascii=False))
    for name in ("catalogue.json", "corpus.json", "packages.json"):
        print(f"{name}: {(a.out / name).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
