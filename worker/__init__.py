"""kiln worker: claims tasks from the server and runs FFmpeg on them."""
