"""The batch engine behind the image commands: resume, manifest, workers, backends."""
