"""What retrain-doctor writes: the summary, OUT/doctor.json, OUT/exclude.txt and OUT/index.html.

doctor.json (paths relative to image_dir, with '/'; scores and accuracies in [0, 1]):
  label_issues  [{path, label, suggested, score}], most likely wrong first; score is the
                out-of-fold probability of the given label (low: likely wrong).
  duplicates    [{paths, labels, sets, kind ('exact' | 'near'), similarity, conflict
                (labels differ), leak (sets differ)}], exact groups first.
  outliers      [{path, label, score}], most atypical first (score low: unlike any image).
  shortcuts     [{label, cue, accuracy}]: the cue alone tells the class from the others
                with that balanced accuracy (chance 0.5).
  classes       [{label, count, training, validation, testing}].
  tiny, blank   [path]; unreadable [{path, reason}]; split_named_folders [name].
  summary       the summary's lines; estimated_label_errors, leaked_test_images,
                image_dir, excluded (how many paths exclude.txt lists), folds.
exclude.txt: the images a user would most likely leave out, one relative path a line
(for --exclude_list). index.html: the findings with thumbnails side by side (thumbnails/).
"""

import json

import numpy as np

from retrain.data import storage
from retrain.doctor.examine import Diagnosis
from retrain.errors import ImageError, UserError

JSON_NAME = "doctor.json"
EXCLUDE_NAME = "exclude.txt"
PAGE_NAME = "index.html"
THUMBNAILS = "thumbnails"
PAGE_LIMITS = {"label_issues": 60, "duplicates": 40, "outliers": 40}
EXAMPLES = 3  # Typical images shown beside a label issue, per class.


def summary_lines(d: Diagnosis) -> list[str]:
    """The short summary printed on stdout."""
    n = len(d.paths)
    conflicts = sum(1 for g in d.duplicates if d.labels_differ(g))
    exact = sum(1 for g in d.duplicates if g.kind == "exact")
    lines = [f"retrain-doctor: {n} images of {len(d.labels)} classes in {d.image_dir}."]
    lines.append(f"  likely label errors: {len(d.label_issues)} flagged; about {d.estimated_label_errors} estimated wrong"
                 + (f" (first: {d.relative[d.label_issues[0].index]}, labelled {d.labels[d.label_of[d.label_issues[0].index]]},"
                    f" looks like {d.labels[d.label_issues[0].suggested]})" if d.label_issues else ""))
    lines.append(f"  duplicates: {len(d.duplicates)} groups ({exact} exact, {len(d.duplicates) - exact} near), "
                 f"{conflicts} with different labels")
    if d.leaked_test_images:
        tests = sum(1 for s in d.set_of if s == "testing")
        lines.append(f"  leak: {d.leaked_test_images} of {tests} test images have a copy in training: the test "
                     f"accuracy counts them (up to {100 * d.leaked_test_images / max(tests, 1):.1f} points too high)")
    if d.outliers:
        first = d.outliers[0][0]
        lines.append(f"  outliers: {len(d.outliers)} listed, most atypical first ({d.relative[first]})")
    for s in d.shortcuts:
        lines.append(f"  shortcut: {s.cue} alone tells '{d.labels[s.label]}' from the others "
                     f"({s.accuracy * 100:.0f}% balanced accuracy; chance is 50%)")
    lines.extend(f"  {note}" for note in d.notes)
    lines.append(f"  {len(d.excluded)} images proposed for leaving out (exclude.txt; retrain --exclude_list).")
    return lines


def record(d: Diagnosis) -> dict:
    """doctor.json's content (see the module docstring)."""
    labels, rel = d.labels, d.relative
    return {
        "image_dir": d.image_dir,
        "summary": summary_lines(d),
        "estimated_label_errors": d.estimated_label_errors,
        "leaked_test_images": d.leaked_test_images,
        "excluded": len(d.excluded),
        "folds": d.folds,
        "label_issues": [{"path": rel[x.index], "label": labels[d.label_of[x.index]], "suggested": labels[x.suggested],
                          "score": round(x.score, 6)} for x in d.label_issues],
        "duplicates": [{
            "paths": [rel[i] for i in g.members], "labels": [labels[d.label_of[i]] for i in g.members],
            "sets": [d.set_of[i] for i in g.members], "kind": g.kind, "similarity": round(g.similarity, 6),
            "conflict": d.labels_differ(g),
            "leak": d.sets_differ(g),
        } for g in d.duplicates],
        "outliers": [{"path": rel[i], "label": labels[d.label_of[i]], "score": round(score, 6)}
                     for i, score in d.outliers],
        "shortcuts": [{"label": labels[s.label], "cue": s.cue, "accuracy": round(s.accuracy, 6)} for s in d.shortcuts],
        "classes": [{"label": c.label, "count": c.count, "training": c.training, "validation": c.validation,
                     "testing": c.testing} for c in d.classes],
        "tiny": [rel[i] for i in d.tiny],
        "blank": [rel[i] for i in d.blank],
        "unreadable": [{"path": storage.relative_path(path, d.image_dir).replace("\\", "/"), "reason": reason}
                       for path, reason in d.unreadable],
        "split_named_folders": d.split_named,
    }


def write(d: Diagnosis, output_dir: str) -> dict[str, str]:
    """Writes doctor.json, exclude.txt and (with jinja2) index.html; {name: path} of what was written."""
    written = {}
    written[JSON_NAME] = storage.join(output_dir, JSON_NAME)
    storage.write_text(written[JSON_NAME], json.dumps(record(d), indent=1, ensure_ascii=False) + "\n")
    written[EXCLUDE_NAME] = storage.join(output_dir, EXCLUDE_NAME)
    storage.write_text(written[EXCLUDE_NAME], "".join(d.relative[i] + "\n" for i in d.excluded))
    page = write_page(d, output_dir)
    if page:
        written[PAGE_NAME] = page
    return written


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; style-src 'unsafe-inline'">
<title>retrain-doctor: {{ image_dir }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; color: #222; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.finding { margin: 0.8em 0; padding: 0.4em; border-left: 4px solid #c60; background: #fafafa; }
figure { display: inline-block; margin: 0.3em; width: 120px; vertical-align: top; }
figure img { width: 120px; height: 120px; object-fit: contain; background: #eee; }
figcaption { font-size: 0.75em; word-wrap: break-word; } .sep { display: inline-block; width: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.7em; text-align: right; }
td:first-child, th:first-child { text-align: left; } .bad { color: #b00; font-weight: bold; }
</style></head>
<body>
<h1>retrain-doctor: {{ image_dir }}</h1>
<pre id="summary">{{ summary }}</pre>
{% macro pic(p) %}<figure><img src="{{ p.src }}" alt="{{ p.path }}"><figcaption>{{ p.caption }}<br>{{ p.path }}</figcaption></figure>{% endmacro %}
<h2 id="label-issues">Likely label errors ({{ label_issues|length }} of {{ label_issue_count }})</h2>
<p>Each image, then typical images of its label, then of the label its content suggests.</p>
{% for x in label_issues %}<div class="finding label-issue">{{ pic(x.image) }}<span class="sep"></span>
{% for p in x.given %}{{ pic(p) }}{% endfor %}<span class="sep"></span>{% for p in x.suggested %}{{ pic(p) }}{% endfor %}</div>
{% endfor %}
<h2 id="duplicates">Duplicates ({{ duplicates|length }} of {{ duplicate_count }} groups)</h2>
{% for g in duplicates %}<div class="finding duplicate"><p>{{ g.kind }} copies, similarity {{ "%.2f"|format(g.similarity) }}
{% if g.conflict %}<span class="bad">labels differ</span>{% endif %} {% if g.leak %}<span class="bad">across sets</span>{% endif %}</p>
{% for p in g.images %}{{ pic(p) }}{% endfor %}</div>
{% endfor %}
<h2 id="outliers">Outliers ({{ outliers|length }})</h2>
<div class="finding">{% for p in outliers %}{{ pic(p) }}{% endfor %}</div>
<h2 id="shortcuts">Shortcuts ({{ shortcuts|length }})</h2>
{% for s in shortcuts %}<div class="finding shortcut"><p>{{ s.text }}</p>{% for p in s.images %}{{ pic(p) }}{% endfor %}</div>
{% endfor %}
<h2 id="classes">Classes</h2>
<table><tr><th>label</th><th>images</th><th>training</th><th>validation</th><th>testing</th></tr>
{% for c in classes %}<tr><td>{{ c.label }}</td><td{% if c.count < 100 %} class="bad"{% endif %}>{{ c.count }}</td>
<td>{{ c.training }}</td><td>{{ c.validation }}</td><td>{{ c.testing }}</td></tr>{% endfor %}</table>
<p>Images proposed for leaving out: {{ excluded }}, in <a href="exclude.txt">exclude.txt</a>; all figures in
<a href="doctor.json">doctor.json</a>.</p>
</body></html>
"""


def write_page(d: Diagnosis, output_dir: str) -> str:
    """Writes index.html and thumbnails/; its path, or '' when jinja2 is missing (the doctor extra has it)."""
    try:
        import jinja2
    except ImportError:
        return ""
    from retrain.evaluation import report

    shown: dict[int, str] = {}

    def picture(i: int, caption: str) -> dict:
        shown.setdefault(i, f"{THUMBNAILS}/{len(shown):05d}.jpg")
        return {"src": shown[i], "path": d.relative[i], "caption": caption}

    def typical(label: int) -> list[int]:
        """The images of label the out-of-fold heads are surest of."""
        mine = np.flatnonzero(d.label_of == label)
        return mine[np.argsort(-d.probabilities[mine, label], kind="stable")][:EXAMPLES].tolist()

    labels = d.labels
    label_issues = [{
        "image": picture(x.index, f"labelled {labels[d.label_of[x.index]]}, looks like {labels[x.suggested]} "
                                  f"({x.score:.2f})"),
        "given": [picture(i, f"a typical {labels[d.label_of[x.index]]}") for i in typical(d.label_of[x.index])],
        "suggested": [picture(i, f"a typical {labels[x.suggested]}") for i in typical(x.suggested)],
    } for x in d.label_issues[:PAGE_LIMITS["label_issues"]]]
    duplicates = [{
        "kind": g.kind, "similarity": g.similarity,
        "conflict": d.labels_differ(g), "leak": d.sets_differ(g),
        "images": [picture(i, f"{labels[d.label_of[i]]}, {d.set_of[i]}") for i in g.members[:8]],
    } for g in d.duplicates[:PAGE_LIMITS["duplicates"]]]
    outliers = [picture(i, f"{labels[d.label_of[i]]} ({score:.2f})") for i, score in d.outliers[:PAGE_LIMITS["outliers"]]]
    shortcuts = [{
        "text": f"{s.cue} alone tells '{labels[s.label]}' from the others: {s.accuracy * 100:.0f}% balanced accuracy "
                "(chance 50%). A model may learn it instead of what the photos show.",
        "images": [picture(i, labels[s.label]) for i in np.flatnonzero(d.label_of == s.label)[:6].tolist()],
    } for s in d.shortcuts]
    html = jinja2.Environment(autoescape=True).from_string(_PAGE).render(
        image_dir=d.image_dir, summary="\n".join(summary_lines(d)), label_issues=label_issues,
        label_issue_count=len(d.label_issues), duplicates=duplicates, duplicate_count=len(d.duplicates),
        outliers=outliers, shortcuts=shortcuts, classes=d.classes, excluded=len(d.excluded))
    with storage.replaced_directory(storage.join(output_dir, THUMBNAILS)) as folder:
        for i, name in shown.items():
            try:
                data = report.thumbnail(d.paths[i])
            except (ImageError, UserError, OSError):
                continue  # Gone or unreadable since: shown without a picture.
            storage.write_bytes(storage.join(folder, storage.basename(name)), data)
    path = storage.join(output_dir, PAGE_NAME)
    storage.write_text(path, html)
    return path
