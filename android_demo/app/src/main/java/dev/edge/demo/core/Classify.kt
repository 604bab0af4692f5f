package dev.edge.demo.core

// Plain Kotlin (no Android imports). Logits -> probabilities -> the top k with their labels.

data class Prediction(val index: Int, val label: String, val probability: Double)

object Classify {
    /** Softmax in double (max subtracted first, so large logits do not overflow). */
    fun softmax(logits: FloatArray): DoubleArray {
        var max = Double.NEGATIVE_INFINITY
        for (v in logits) if (v > max) max = v.toDouble()
        val out = DoubleArray(logits.size)
        var sum = 0.0
        for (i in logits.indices) {
            out[i] = Math.exp(logits[i] - max)
            sum += out[i]
        }
        for (i in out.indices) out[i] /= sum
        return out
    }

    /** The k largest, highest first; ties keep the lower index first (as a stable sort would). */
    fun topK(probs: DoubleArray, k: Int, labels: List<String>?): List<Prediction> {
        val order = probs.indices.sortedWith(Comparator { a, b ->
            val c = probs[b].compareTo(probs[a])
            if (c != 0) c else a.compareTo(b)
        })
        return order.take(Math.min(k, probs.size)).map { i ->
            Prediction(i, labels?.getOrNull(i) ?: "class $i", probs[i])
        }
    }

    /** The classifier's logits from the model's outputs, or why there are none (embeddings,
     *  feature maps, a label count that does not fit). */
    fun logitsOf(manifest: EdgeManifest, outputs: List<FloatArray>): FloatArray {
        if (manifest.mode != "classifier")
            throw ManifestError("${manifest.artifact} is a '${manifest.mode}' model, not a classifier: nothing to label")
        val logits = outputs[0]
        val labels = manifest.labels
        if (labels != null && labels.size != logits.size)
            throw ManifestError("${labels.size} labels for ${logits.size} outputs")
        return logits
    }
}
