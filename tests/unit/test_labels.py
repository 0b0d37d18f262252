import pytest

from affectlab.labels import (AUS_17, AUS_ABAW, EXPRESSION_AUS, EXPRESSIONS, LABEL_MAPS, RAW_NAMES, REACTIONS,
                              au_given_expression, from_canonical, to_canonical)


def test_label_spaces():
    assert EXPRESSIONS == ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
    assert len(AUS_ABAW) == 12 and len(AUS_17) == 17 and len(REACTIONS) == 7
    assert set(AUS_ABAW) <= set(AUS_17) | {"AU20"}


# each dataset's raw name of a class must land on the canonical class of the same meaning
SYNONYMS = {"happy": "Happiness", "sad": "Sadness", "angry": "Anger", "anger": "Anger", "disgust": "Disgust",
            "fear": "Fear", "surprise": "Surprise", "neutral": "Neutral", "happiness": "Happiness",
            "sadness": "Sadness"}


@pytest.mark.parametrize("dataset", ["affectnet", "rafdb", "expw", "fer2013"])
def test_every_raw_label_maps_by_meaning(dataset):
    for raw, name in RAW_NAMES[dataset].items():
        canon = to_canonical(dataset, raw)
        meaning = SYNONYMS.get(name.lower())
        if meaning is None:
            assert canon is None, f"{dataset} {raw} {name} should be dropped"
        else:
            assert EXPRESSIONS[canon] == meaning
            assert from_canonical(dataset, canon) == raw


def test_affwild2_labels():
    assert [to_canonical("affwild2", i) for i in range(7)] == list(range(7))
    assert to_canonical("affwild2", -1) is None and to_canonical("affwild2", 7) is None


def test_bad_labels_are_clear_errors():
    with pytest.raises(ValueError, match="outside"):
        to_canonical("rafdb", 0)
    with pytest.raises(ValueError, match="unknown dataset"):
        to_canonical("ckplus", 1)
    with pytest.raises(ValueError, match="integer"):
        to_canonical("expw", 1.5)
    assert to_canonical("expw", "3") == EXPRESSIONS.index("Happiness")


def test_every_map_is_injective_on_kept_labels():
    for name, table in LABEL_MAPS.items():
        kept = [v for v in table.values() if v is not None]
        assert sorted(kept) == list(range(7)), name


def test_expression_au_table():
    table = au_given_expression()
    assert len(table) == 7 and all(len(r) == 17 for r in table)
    assert sum(table[0]) == 0  # Neutral activates nothing
    happy = dict(zip(AUS_17, table[EXPRESSIONS.index("Happiness")]))
    assert happy["AU12"] == happy["AU25"] == 1.0 and happy["AU6"] == pytest.approx(0.51)
    for expr, entry in EXPRESSION_AUS.items():
        assert set(entry["prototypical"]).isdisjoint(entry["observational"])
        assert all(0 < s < 1 for s in entry["observational"].values())
