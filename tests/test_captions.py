"""Words a person would write: every concept's caption, through every card template, reads as English.

The checks are rules, not a grammar: an article must be followed by a noun phrase whose head is a singular
noun (not a verb-ing: "a laughing"; not a plural: "a crickets"), never by another article ("the sound of a a
dog"); "an" goes before vowel sounds and "a" before consonant sounds; every caption is "subject + verb-ing ..."
("a dog barking", "someone laughing"). The first test shows the rules catching the old prompts.
"""
from __future__ import annotations

import json
import re

import pytest

from wavbrivl.worlds.everyday.backbone import PHRASE_TEMPLATES
from wavbrivl.worlds.everyday.catalogue import load_json

ARTICLES = {"a", "an", "the"}
#: Nouns that end in -ing (a verb-ing after "a" is wrong, these are not).
ING_NOUNS = {"drawing", "recording", "painting", "thing", "something", "string", "ring", "king", "wing", "ceiling", "building",
             "spring"}
#: Singular nouns that end in -s.
SINGULAR_S = {"bus", "glass", "chorus", "walrus", "octopus", "bass", "grass", "compass"}
PREPOSITIONS = {"of", "on", "in", "into", "at", "over", "past", "with", "and", "to"}
#: Vowel letters that sound as consonants ("a unicorn", "a one-man band") and silent h ("an hour").
CONSONANT_SOUND = ("uni", "use", "one", "eu", "ur")
VOWEL_SOUND = ("hour", "honest", "heir")


def is_verb_ing(word: str) -> bool:
    return word.endswith("ing") and len(word) > 4 and word not in ING_NOUNS


def is_plural(word: str) -> bool:
    return word.endswith("s") and not word.endswith(("ss", "us", "'s")) and word not in SINGULAR_S


def starts_with_vowel_sound(word: str) -> bool:
    return word.startswith(VOWEL_SOUND) or (word[0] in "aeiou" and not word.startswith(CONSONANT_SOUND))


def problems(text: str) -> list[str]:
    """What is wrong with a prompt, by the rules above (empty: nothing found)."""
    out = []
    if text != text.strip() or "  " in text or not text:
        out.append("stray spaces")
    words = re.findall(r"[a-z']+", text.lower())
    for i, word in enumerate(words):
        if word not in ARTICLES:
            continue
        rest = words[i + 1:]
        if not rest:
            out.append(f"{word!r} at the end")
            continue
        if rest[0] in ARTICLES:
            out.append(f"doubled article {word!r} {rest[0]!r}")
            continue
        if word != "the" and starts_with_vowel_sound(rest[0]) != (word == "an"):
            out.append(f"{word!r} before {rest[0]!r}")
        phrase = []  # the noun phrase: up to its verb-ing or preposition
        for w in rest:
            if is_verb_ing(w) or w in PREPOSITIONS:
                break
            phrase.append(w)
        if not phrase:
            out.append(f"{word!r} before the verb {rest[0]!r}")
        elif word != "the" and is_plural(phrase[-1]):
            out.append(f"{word!r} before the plural {phrase[-1]!r}")
    return out


def caption_problems(caption: str) -> list[str]:
    """A caption is "subject + verb-ing ...": a first word that is not the verb, and a verb-ing after it."""
    words = caption.split()
    out = problems(caption)
    if caption != caption.strip() or not words:
        return out + ["empty"]
    if is_verb_ing(words[0].lower()):
        out.append("no subject: it starts with the verb")
    if not any(is_verb_ing(w.lower()) for w in words[1:]):
        out.append("no verb-ing after the subject")
    if words[0][0].isupper():
        out.append("capital first letter (captions are put inside templates)")
    return out


def test_the_rules_catch_the_old_prompts():
    old_templates = ("{}", "a {}", "a drawing of a {}", "the sound of a {}")
    assert problems("a laughing") and problems("the sound of a chirping birds") and problems("a drawing of a crickets")
    assert problems("the sound of a a dog") and problems("a owl hooting") and problems("an dog barking")
    assert problems("a church bells ringing") and problems("an unicorn") and not problems("a unicorn") and not problems("an hour")
    assert not problems("a drawing of someone laughing") and not problems("the sound of a ship's horn blowing")
    assert sum(bool(problems(t.format(name))) for name in ("laughing", "coughing", "crickets") for t in old_templates) >= 6
    assert caption_problems("laughing") and caption_problems("rain") and not caption_problems("rain falling")


CATALOGUE = load_json("catalogue.json")
CAPTIONS = {c["name"]: c.get("caption", "") for c in CATALOGUE["concepts"]}


def test_every_concept_has_its_own_caption():
    assert len(CAPTIONS) == 93 and all(CAPTIONS.values())
    assert len(set(CAPTIONS.values())) == len(CAPTIONS)  # two concepts never share a label


@pytest.mark.parametrize("name", sorted(CAPTIONS))
def test_the_caption_reads_as_english_in_every_template(name):
    caption = CAPTIONS[name]
    assert caption_problems(caption) == [], (name, caption)
    for template in PHRASE_TEMPLATES:
        prompt = template.format(caption)
        assert problems(prompt) == [], (template, prompt)


def test_the_japanese_names_cover_every_concept():
    """The page shows the example sounds' Japanese titles from names_ja.json, by concept name."""
    from wavbrivl.worlds.everyday.catalogue import HERE

    names_ja = json.loads((HERE / "names_ja.json").read_text(encoding="utf-8"))
    assert set(names_ja) >= set(CAPTIONS) and all(names_ja[n] for n in CAPTIONS)
