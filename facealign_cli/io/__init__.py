"""Files in and out: image decoding, input discovery, JSON/CSV records and atomic writes, mesh files."""
