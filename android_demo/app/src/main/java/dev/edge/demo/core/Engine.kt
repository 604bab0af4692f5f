package dev.edge.demo.core

// Plain Kotlin (no Android imports). What a runtime wrapper (ExecuTorch, LiteRT: Android files)
// gives the platform-independent code: one forward from a prepared input to float outputs.

/** The model input: float32 data, or the quantized bytes for an int8/uint8 input tensor. */
class ModelInput(val shape: List<Int>, val floats: FloatArray?, val bytes: ByteArray?) {
    companion object {
        /** Float tensor -> the artifact's input dtype (quantized with the manifest's scale/zero point). */
        fun of(spec: TensorSpec, x: FloatArray): ModelInput = when (spec.dtype) {
            "float32" -> ModelInput(spec.shape, x, null)
            "int8", "uint8" -> {
                val q = spec.quantization
                    ?: throw ManifestError("input '${spec.name}' is ${spec.dtype} but the manifest gives no scale/zero point")
                ModelInput(spec.shape, null, Quant.quantize(x, q, spec.dtype))
            }
            else -> throw ManifestError("input dtype '${spec.dtype}' is not supported (float32, int8, uint8)")
        }
    }
}

/** One output, dequantized to float, with the shape the runtime reports. */
class ModelOutput(val shape: List<Int>, val values: FloatArray)

interface Engine : java.io.Closeable {
    /** "executorch" or "litert" (the bench schema's runtime names). */
    val runtime: String
    /** The runtime library's version as the app was built with it, or null when unknown. */
    val runtimeVersion: String?

    fun forward(input: ModelInput): List<ModelOutput>
}
