"""Writes a demo image folder and a tiny local TF-Hub module, for trying retrain offline.

  python scripts/make_demo_data.py DIR

creates DIR/images (four colour classes of synthetic shapes) and DIR/module (a tiny
feature-vector SavedModel with 24x24 input). Real work uses a real module instead.
"""

import argparse
import os

from retrain import testing
from retrain.commands import cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="where to write images/ and module/")
    parser.add_argument("--images_per_class", type=int, default=60)
    args = parser.parse_args()
    cli.quiet_tensorflow()
    cli.import_tensorflow_quietly(verbose=False)
    images = os.path.join(args.directory, "images")
    module = os.path.join(args.directory, "module")
    testing.make_image_folder(
        images, class_names=("red_circles", "green", "Blue-Shapes", "yellow"), images_per_class=args.images_per_class
    )
    if not os.path.exists(os.path.join(module, "saved_model.pb")):
        testing.build_tiny_module(module)
    print(f"Wrote {images} and {module}")


if __name__ == "__main__":
    main()
