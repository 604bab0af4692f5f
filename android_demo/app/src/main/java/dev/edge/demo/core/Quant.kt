package dev.edge.demo.core

// Plain Kotlin (no Android imports). int8/uint8 tensors of a full-integer .tflite: the same
// rounding as edge's LiteRT runtime (numpy: clip(rint(x / scale + zero_point)), float32).

object Quant {
    fun range(dtype: String): IntRange = when (dtype) {
        "int8" -> -128..127
        "uint8" -> 0..255
        else -> throw ManifestError("no quantization for dtype '$dtype' (int8, uint8)")
    }

    /** real -> q: rint(x / scale + zero_point) in float32 (ties to even, as numpy), clamped. */
    fun quantize(x: FloatArray, q: QuantParams, dtype: String): ByteArray {
        val r = range(dtype)
        val zp = q.zeroPoint.toFloat()
        val out = ByteArray(x.size)
        for (i in x.indices) {
            val v = Math.rint((x[i] / q.scale + zp).toDouble())
            val c = if (v < r.first) r.first else if (v > r.last) r.last else v.toInt()
            out[i] = c.toByte()
        }
        return out
    }

    /** q -> real: (q - zero_point) * scale in float32. */
    fun dequantize(b: ByteArray, q: QuantParams, dtype: String): FloatArray {
        val signed = when (dtype) {
            "int8" -> true
            "uint8" -> false
            else -> throw ManifestError("no quantization for dtype '$dtype' (int8, uint8)")
        }
        val out = FloatArray(b.size)
        for (i in b.indices) {
            val v = if (signed) b[i].toInt() else b[i].toInt() and 0xFF
            out[i] = (v - q.zeroPoint).toFloat() * q.scale
        }
        return out
    }
}
