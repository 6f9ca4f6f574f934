"""Hardware benchmarks: the timing engine every benchmark uses (timing), peak memory (memory), hardware peaks
(hardware), GEMM cases by dtype (gemm), the quantize-dequantize benchmark (qdq) and the `bench gemm|qdq`
command line (cli). The bench experiment kind (tradeoffs.kinds.bench) runs them in the pipeline."""
