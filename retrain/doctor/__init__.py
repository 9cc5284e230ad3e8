"""retrain-doctor: what is wrong with an image folder, found before it costs accuracy.

examine gathers every image's bottleneck (retrain's cache) and facts (facts), then runs
each check: label_issues (cleanlab on out-of-fold heads), duplicates (pixels decide),
outliers, shortcuts; outputs writes the summary, doctor.json, exclude.txt and the page.
"""
