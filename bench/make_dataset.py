#!/usr/bin/env python3
# A verbatim copy of the project's shared generator (../shared/bench/make_dataset.py),
# so that a clone of the repository alone can run `make bench`; files_bench.py prefers
# the shared one when it sits next to the repository. Not linted: it is theirs.
"""Deterministic 'application data' tree for backup benchmarks.

usage: make_dataset.py DIR [SCALE]   (SCALE 1.0 ~ 0.9 GB)
Mix: many small config/JSON files, compressible logs, incompressible blobs,
like the configuration, secrets, certificates and logs a DR plan protects.
"""
import json, os, random, sys

def main(root, scale=1.0):
    rng = random.Random(42)
    os.makedirs(root, exist_ok=True)
    n_small = int(20000 * scale)
    for i in range(n_small):
        d = os.path.join(root, "config", f"svc{i % 200:03d}")
        os.makedirs(d, exist_ok=True)
        doc = {"service": f"svc{i%200}", "replicas": rng.randint(1, 9),
               "env": {f"K{j}": rng.getrandbits(64) for j in range(rng.randint(5, 120))}}
        with open(os.path.join(d, f"conf{i}.json"), "w") as f:
            json.dump(doc, f, indent=2)
    for i in range(int(200 * scale)):
        d = os.path.join(root, "logs", f"node{i % 10}")
        os.makedirs(d, exist_ok=True)
        lines = []
        for k in range(26000):
            lines.append(f"2025-01-{1 + k % 28:02d}T{k % 24:02d}:{k % 60:02d}:{(k*7) % 60:02d}Z meter={rng.randint(1, 50000)} "
                         f"kwh={rng.random()*9:.4f} status={'ok' if rng.random() < .97 else 'retry'} req={rng.getrandbits(32):08x}\n")
        with open(os.path.join(d, f"app-{i}.log"), "w") as f:
            f.writelines(lines)
    blobs = os.path.join(root, "blobs")
    os.makedirs(blobs, exist_ok=True)
    for i in range(int(50 * scale)):
        with open(os.path.join(blobs, f"img{i}.bin"), "wb") as f:
            f.write(rng.randbytes(8 << 20))

if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
