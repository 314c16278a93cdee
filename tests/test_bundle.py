"""The bundle card (bundle.json): round trip, defaults, languages, and errors that name the file and the field."""
from __future__ import annotations

import json

import pytest

from wavbrivl.bundle import (BundleCard, BundleError, BundlePart, ExampleSound, GeneratorSettings, current_bundle_path,
                             localize)


def card() -> BundleCard:
    return BundleCard(
        name={"en": "Everyday sounds", "ja": "身の回りの音"}, description="Real recordings.", labels=["a dog", "rain"],
        templates=["the sound of {}", "{}"], examples=[ExampleSound("examples/dog.wav", "a dog", heard=True, title={"ja": "犬"})],
        parts=[BundlePart("audio encoder", "CC-BY-4.0", "aisfx (Ma & Lerch)", ["audio_encoder.safetensors"])],
        generator=GeneratorSettings(steps=30, guidance=1.5),
    )


def test_round_trip(tmp_path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "dog.wav").write_bytes(b"RIFF")
    c = card()
    path = c.save(tmp_path)
    assert json.loads(path.read_text(encoding="utf-8"))["format"] == "wavbrivl-bundle"
    assert BundleCard.load(tmp_path) == c


def test_languages_fall_back_to_english():
    c = card()
    assert c.display_name("ja-JP") == "身の回りの音" and c.display_name("fr") == "Everyday sounds"
    assert c.example_title(c.examples[0], "ja") == "犬" and c.example_title(c.examples[0], "en") == "a dog"
    assert localize("plain", "ja") == "plain" and localize(None) == "" and localize({"ja": "だけ"}, "en") == "だけ"


def test_default_card_for_a_plain_checkpoint(tmp_path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "church_bells.wav").write_bytes(b"RIFF")
    c = BundleCard.default("my-checkpoint", tmp_path)
    assert c.name == "my-checkpoint" and c.labels and "{}" in c.templates[0]
    assert [(e.file, e.label, e.heard) for e in c.examples] == [("examples/church_bells.wav", "church bells", True)]


@pytest.mark.parametrize("change,needle", [
    (lambda d: d.pop("name"), "the field 'name' is missing"),
    (lambda d: d.update(format_version=9), "not a wavbrivl-bundle v1 card"),
    (lambda d: d.update(templates=["no slot"]), "'templates'"),
    (lambda d: d["examples"][0].update(colour="red"), r"examples\[0\] has unknown field\(s\) 'colour'"),
    (lambda d: d["examples"][0].pop("heard"), r"examples\[0\] lacks the field\(s\) 'heard'"),
    (lambda d: d["parts"][0].pop("licence"), r"parts\[0\] lacks the field\(s\) 'licence'"),
    (lambda d: d.update(generator=[]), "generator: expected a JSON object"),
    (lambda d: d["examples"][0].update(file="examples/missing.wav"), "examples/missing.wav"),
])
def test_bad_cards_name_the_file_and_the_field(tmp_path, change, needle):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "dog.wav").write_bytes(b"RIFF")
    data = card().to_dict()
    change(data)
    (tmp_path / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=needle) as info:
        BundleCard.load(tmp_path)
    assert "bundle.json" in str(info.value)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        BundleCard.load(tmp_path)


def test_a_renamed_bundle_folder_leads_to_its_new_name(tmp_path, recwarn):
    """``assets/starter`` -> ``assets/shapes`` while only the new folder exists; anything else is left as given."""
    assets = tmp_path / "assets"
    (assets / "shapes").mkdir(parents=True)
    assert current_bundle_path(assets / "starter") == assets / "starter"  # no bundle there to lead to
    assert not recwarn.list
    (assets / "shapes" / "config.json").write_text("{}")
    with pytest.warns(FutureWarning, match=r"starter is now .*assets/shapes"):
        assert current_bundle_path(str(assets / "starter")) == assets / "shapes"
    (tmp_path / "elsewhere" / "shapes").mkdir(parents=True)
    (tmp_path / "elsewhere" / "shapes" / "config.json").write_text("{}")
    assert current_bundle_path(tmp_path / "elsewhere" / "starter") == tmp_path / "elsewhere" / "starter"
    (assets / "starter").mkdir()
    assert current_bundle_path(assets / "starter") == assets / "starter"  # a folder of that name wins
    assert not recwarn.list
