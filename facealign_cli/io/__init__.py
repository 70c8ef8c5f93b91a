"""Files in and out, knowing nothing of models.

* :mod:`.images`: image decoding (formats, EXIF orientation, memory bounds, image errors);
* :mod:`.inputs`: the images of a run from files, folders and stdin lists, their output keys;
* :mod:`.records`: JSON / CSV / NDJSON records and atomic writes;
* :mod:`.meshes`: mesh files (OBJ, PLY) in the image or viewer frame.
"""
