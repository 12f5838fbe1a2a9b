"""A generated build context for the big-layer benchmarks (issue 19): FILES files of
MB megabytes in all, in 100 directories under data/; a third of the files random
bytes (they do not compress), the rest log-like text. Deterministic (seeded).
Usage: python3 bench/make-context.py DIR MB FILES"""
import os, random, sys
root, mb, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(19)
size = mb * 1_000_000 // files
line = b"INFO request served in 12ms status=200 path=/api/v1/items/"
for i in range(files):
    d = os.path.join(root, "data", f"d{i % 100:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}.bin"), "wb") as f:
        if i % 3 == 0:
            f.write(rng.randbytes(size))
        else:
            text = b"".join(b"%d " % (i * 1000 + n) + line + b"\n" for n in range(size // len(line) + 1))
            f.write(text[:size])
