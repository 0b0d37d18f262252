"""Generating a world says its size before the progress bar starts (the full preset is hours of images)."""
import json

from affectlab.data.synth import make_world


def test_generation_shows_the_size_first(tmp_path, capfd):
    root = make_world(tmp_path / "tiny", preset="tiny", seed=0, progress=True)
    err = capfd.readouterr().err
    counts = json.loads((root / "manifest.json").read_text())["counts"]
    total = counts["affwild2_frames"] + counts["hume_frames"] + counts["static_images"]
    first = err.strip().splitlines()[0]
    assert first.startswith("synthetic world (tiny, seed 0):") and "on disk" in first
    # every image the generator writes is counted in the announced size (lost frames get none: at most that)
    announced = int(first.split(": ")[1].split(" images")[0].replace(",", ""))
    assert announced >= total > 0
