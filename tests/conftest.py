"""The suite runs on the CPU even where a GPU exists: exact-equality tests (resume, fused against
looped peers) hold in fp32 on the CPU, and notebooks started by the tests inherit this."""
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
