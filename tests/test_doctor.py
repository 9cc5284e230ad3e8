"""retrain-doctor: planted faults are found, a clean folder stays clean, exclusions train on what is left."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from conftest import browser_dom, call_command, chromium, hide_modules, quick_config, run_tool
from PIL import Image, ImageEnhance

import retrain
from retrain import testing
from retrain.data import image_lists

pytest.importorskip("cleanlab", reason='needs pip install "retrain[doctor]" (.ci/run installs it)')

CLASSES = ("red", "green", "blue")


def move(root, relative, to_class, new_name):
    target = os.path.join(root, to_class, new_name)
    os.rename(os.path.join(root, relative), target)
    return f"{to_class}/{new_name}"


def planted_folder(root):
    """Three colour classes of 60 with known faults; returns (root, {fault: [relative paths or pairs]})."""
    testing.make_image_folder(root, class_names=CLASSES, images_per_class=60, min_size=48, max_size=120, seed=11)
    faults = {"flips": [], "copies": [], "conflicts": [], "exact": [], "outliers": []}
    # Six labels flipped: an image moved to another class's folder.
    for k, (source, target) in enumerate([("red", "green"), ("red", "blue"), ("green", "red"),
                                         ("green", "blue"), ("blue", "red"), ("blue", "green")]):
        faults["flips"].append(move(root, f"{source}/{source}_{50 + k:03d}.jpg", target, f"flipped_{k}.jpg"))
    # Copies: re-encoded, resized, brightened, in the same class; two in another class.
    edits = [lambda im: im, lambda im: im.resize((int(im.width * 0.7), int(im.height * 0.7))),
             lambda im: ImageEnhance.Brightness(im).enhance(1.25)]
    for k in range(6):
        label = CLASSES[k % 3]
        original = f"{label}/{label}_{k:03d}.jpg"
        into = label if k < 4 else CLASSES[(k + 1) % 3]
        copy = f"{into}/copy_{k}.jpg"
        with Image.open(os.path.join(root, original)) as image:
            edits[k % 3](image.convert("RGB")).save(os.path.join(root, copy), "JPEG", quality=60 if k % 3 == 0 else 90)
        faults["copies" if into == label else "conflicts"].append((original, copy))
    shutil.copyfile(os.path.join(root, "red/red_010.jpg"), os.path.join(root, "red/red_010 again.jpg"))
    faults["exact"].append(("red/red_010.jpg", "red/red_010 again.jpg"))
    # Four photos of another domain (yellow and magenta stripes), one in each class and an odd name.
    rng = np.random.default_rng(3)
    for k, label in enumerate(("red", "green", "blue", "red")):
        stripes = np.zeros((80, 80, 3), np.uint8)
        stripes[:, :, :] = (250, 230, 20) if k % 2 else (240, 20, 240)
        stripes[::8] = 0
        stripes = np.clip(stripes + rng.normal(0, 5, stripes.shape), 0, 255).astype(np.uint8)
        name = f"{label}/odd <b>{k}&.jpg"
        Image.fromarray(stripes).save(os.path.join(root, name), "JPEG")
        faults["outliers"].append(name)
    return root, faults


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory, tiny_module):
    base = tmp_path_factory.mktemp("doctor")
    root, faults = planted_folder(str(base / "images"))
    run = quick_config(base, root, tiny_module, testing_percentage=20, validation_percentage=20)
    config = retrain.DoctorConfig(run=run, output_dir=str(base / "doctor"))
    return config, faults, retrain.examine(config)


def found_pairs(diagnosis):
    return [set(diagnosis.relative[i] for i in group.members) for group in diagnosis.duplicates]


def test_flipped_labels_come_first(diagnosed):
    _, faults, d = diagnosed
    first = [d.relative[x.index] for x in d.label_issues[:10]]
    assert len(set(faults["flips"]) & set(first)) >= 5, first
    flip = next(x for x in d.label_issues if d.relative[x.index] == faults["flips"][0])  # A red image in green.
    assert d.labels[d.label_of[flip.index]] == "green" and d.labels[flip.suggested] == "red" and flip.score < 0.5
    # Untouched images are rarely flagged: at most about as many as the faults.
    flagged = {d.relative[x.index] for x in d.label_issues}
    planted = set(faults["flips"]) | {copy for _, copy in faults["conflicts"]} | set(faults["outliers"])
    assert len(flagged - planted) <= 8, sorted(flagged - planted)


def test_copies_are_found_by_their_pixels_not_look_alikes(diagnosed):
    _, faults, d = diagnosed
    groups = found_pairs(d)
    for pair in faults["copies"] + faults["conflicts"] + faults["exact"]:
        assert any(set(pair) <= group for group in groups), pair
    assert len(groups) == len(faults["copies"]) + len(faults["conflicts"]) + len(faults["exact"])  # Nothing else.
    exact = [g for g in d.duplicates if g.kind == "exact"]
    assert [{d.relative[i] for i in g.members} for g in exact] == [set(faults["exact"][0])]
    for group in d.duplicates:
        labels = {d.label_of[i] for i in group.members}
        is_conflict = any(set(pair) == {d.relative[i] for i in group.members} for pair in faults["conflicts"])
        assert (len(labels) > 1) == is_conflict


def test_other_domains_are_the_first_outliers(diagnosed):
    _, faults, d = diagnosed
    first = [d.relative[i] for i, _ in d.outliers[:8]]
    assert set(faults["outliers"]) <= set(first), first
    scores = [score for _, score in d.outliers]
    assert scores == sorted(scores)


def test_outputs_name_what_was_found_and_exclude_what_to_leave_out(diagnosed):
    from retrain.doctor import outputs

    config, faults, d = diagnosed
    written = outputs.write(d, config.output_dir)
    record = json.loads(open(written["doctor.json"]).read())
    assert record["label_issues"][0].keys() == {"path", "label", "suggested", "score"}
    assert {"paths", "labels", "sets", "kind", "similarity"} <= record["duplicates"][0].keys()
    assert record["outliers"][0].keys() == {"path", "label", "score"}
    assert [c["label"] for c in record["classes"]] == sorted(CLASSES)
    assert sum(c["count"] for c in record["classes"]) == len(d.paths)
    for c in record["classes"]:
        assert c["count"] == c["training"] + c["validation"] + c["testing"]
    assert all("\\" not in issue["path"] and not issue["path"].startswith("/") for issue in record["label_issues"])
    excluded = open(written["exclude.txt"]).read().splitlines()
    assert len(set(faults["flips"]) & set(excluded)) >= 5
    for pair in faults["copies"] + faults["exact"]:
        assert len(set(pair) & set(excluded)) == 1, pair  # One copy kept.
    assert set(excluded) <= set(d.relative)


@pytest.mark.skipif(chromium() is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_the_page_shows_the_findings_with_names_escaped(diagnosed, tmp_path):
    from retrain.doctor import outputs

    config, _, d = diagnosed
    page = outputs.write_page(d, config.output_dir)
    html = open(page).read()
    assert "<b>0" not in html and "odd &lt;b&gt;0&amp;.jpg" in html
    dom, console = browser_dom(f"file://{page}", tmp_path / "profile")
    assert console == []
    assert dom.count('class="finding label-issue"') == min(len(d.label_issues), outputs.PAGE_LIMITS["label_issues"])
    assert dom.count('class="finding duplicate"') == len(d.duplicates)
    sources = set(re.findall(r'<img src="(thumbnails/[0-9]+\.jpg)"', html))
    assert sources and all(os.path.getsize(os.path.join(config.output_dir, s)) > 300 for s in sources)


def test_retrain_exclude_list_trains_on_what_is_left(diagnosed, tmp_path, tiny_module):
    config, faults, d = diagnosed
    listed = tmp_path / "exclude.txt"
    leave_out = faults["flips"] + [copy for _, copy in faults["copies"]]
    listed.write_text("# planted faults\n" + "\n".join(leave_out) + "\n\nno/such.jpg\n")
    split = retrain.SplitConfig(testing_percentage=20, validation_percentage=20)
    before = image_lists.load(config.run.image_dir, split)
    after = image_lists.load(config.run.image_dir, retrain.SplitConfig(20, 20, exclude_list=str(listed)))
    paths_before = {c: set(before.paths(c)) for c in image_lists.CATEGORIES}
    paths_after = {c: set(after.paths(c)) for c in image_lists.CATEGORIES}
    gone = {os.path.join(config.run.image_dir, p) for p in leave_out}
    for category in image_lists.CATEGORIES:
        assert paths_after[category] == paths_before[category] - gone  # Every other image keeps its set.
    status, _, stderr = call_command(
        "retrain", f"--image_dir={config.run.image_dir}", f"--tfhub_module={tiny_module}",
        f"--bottleneck_dir={config.run.bottleneck_dir}", f"--output_graph={tmp_path / 'g.pb'}",
        f"--output_labels={tmp_path / 'l.txt'}", f"--summaries_dir={tmp_path / 's'}",
        f"--checkpoint_path={tmp_path / 'ck'}", "--how_many_training_steps=20", f"--exclude_list={listed}",
        "--testing_percentage=20", "--validation_percentage=20")
    assert status == 0, stderr[-2000:]
    assert f"Left out {len(leave_out)} images listed in {listed} (1 listed are not in" in stderr
    status, stdout, stderr = call_command(
        "label-image", f"--graph={tmp_path / 'g.pb'}", f"--labels={tmp_path / 'l.txt'}",
        f"--image_dir={config.run.image_dir}", "--evaluate", f"--exclude_list={listed}", "--output_format=json")
    assert status == 0 and f"Left out {len(leave_out)} images" in stderr
    evaluated = json.loads(stdout)
    assert len(evaluated["images"]) == len(d.paths) - len(leave_out)


def pattern_folder(root, per_class=40, seed=0):
    """Two classes told apart by where the bright half is (top or left), any hue, size and
    JPEG quality: nothing but the content predicts the class."""
    rng = np.random.default_rng(seed)
    for label in ("top", "left"):
        os.makedirs(os.path.join(root, label))
        for k in range(per_class):
            w, h = (int(v) for v in rng.integers(40, 120, 2))
            hue = rng.integers(40, 200, 3)
            pixels = np.clip(rng.normal(0, 25, (h, w, 3)) + hue * 0.5, 0, 255)
            if label == "top":
                pixels[: h // 2] += hue
            else:
                pixels[:, : w // 2] += hue
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                os.path.join(root, label, f"{k:03d}.jpg"), "JPEG", quality=int(rng.integers(70, 95)))
    return root


def test_a_clean_folder_has_no_duplicates_and_no_shortcut(tmp_path, tiny_module):
    root = pattern_folder(str(tmp_path / "clean"))
    config = retrain.DoctorConfig(run=quick_config(tmp_path, root, tiny_module), output_dir=str(tmp_path / "out"))
    d = retrain.examine(config)
    assert d.duplicates == [] and d.shortcuts == [] and d.leaked_test_images == 0
    assert len(d.label_issues) <= 4


def test_a_class_one_size_and_format_is_a_shortcut(tmp_path, tiny_module):
    root = pattern_folder(str(tmp_path / "shortcut"), seed=1)
    for k, name in enumerate(sorted(os.listdir(os.path.join(root, "left")))):
        path = os.path.join(root, "left", name)
        with Image.open(path) as image:
            image.convert("RGB").resize((64, 64)).save(path[:-4] + ".png", "PNG")
        os.remove(path)
    d = retrain.examine(retrain.DoctorConfig(run=quick_config(tmp_path, root, tiny_module),
                                             output_dir=str(tmp_path / "out")))
    named = {(d.labels[s.label], s.cue) for s in d.shortcuts}
    assert {("left", "file format"), ("left", "image size")} <= named
    assert all(cue != "mean colour" for _, cue in named)


def test_missing_cleanlab_is_one_line(monkeypatch, tmp_path):
    hide_modules(monkeypatch, "cleanlab")
    status, stdout, stderr = call_command("retrain-doctor", f"--image_dir={tmp_path}", f"--output_dir={tmp_path}")
    assert status == 1 and stdout == "" and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].endswith('pip install "retrain[doctor]"')


def test_help_documents_every_flag():
    status, stdout, _ = call_command("retrain-doctor", "--help")
    assert status == 0
    for flag in ("image_dir", "output_dir", "tfhub_module", "bottleneck_dir", "testing_percentage",
                 "validation_percentage", "image_size", "exclude_list", "folds", "random_seed", "allow_unsafe_ops"):
        assert f"--{flag}" in stdout or f"--[no]{flag}" in stdout, flag


def test_retrain_doctor_command(tmp_path, tiny_module):
    root, faults = planted_folder(str(tmp_path / "images"))
    before = sorted(os.listdir(os.path.join(root, "red")))
    done = run_tool("retrain-doctor", f"--image_dir={root}", f"--tfhub_module={tiny_module}",
                    f"--bottleneck_dir={tmp_path / 'cache'}", f"--output_dir={tmp_path / 'out'}", "--folds=3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "likely label errors:" in done.stdout and "duplicates: 7 groups (1 exact, 6 near)" in done.stdout
    assert sorted(os.listdir(os.path.join(root, "red"))) == before  # Nothing moved or deleted.
    assert {"doctor.json", "exclude.txt", "index.html", "thumbnails"} <= set(os.listdir(tmp_path / "out"))
    again = run_tool("retrain-doctor", f"--image_dir={root}", f"--tfhub_module={tiny_module}",
                     f"--bottleneck_dir={tmp_path / 'cache'}", f"--output_dir={tmp_path / 'out2'}", "--folds=3")
    assert "none computed" in again.stderr  # The cache retrain fills, and reads.
    first = (tmp_path / "out" / "doctor.json").read_text()
    assert first == (tmp_path / "out2" / "doctor.json").read_text() and json.loads(first)["folds"] == 3
    other_seed = run_tool("retrain-doctor", f"--image_dir={root}", f"--tfhub_module={tiny_module}",
                          f"--bottleneck_dir={tmp_path / 'cache'}", f"--output_dir={tmp_path / 'out3'}",
                          "--folds=3", "--random_seed=5")
    assert other_seed.returncode == 0
    scores = [json.loads((tmp_path / name / "doctor.json").read_text())["label_issues"] for name in ("out", "out3")]
    assert [x["score"] for x in scores[0]] != [x["score"] for x in scores[1]]  # Other folds, other heads.
    status, _, stderr = call_command("retrain-doctor", f"--image_dir={root}", "--folds=1")
    assert status == 2 and "--folds must be at least 2" in stderr
