package dev.edge.demo.core

// Plain Kotlin (no Android imports). The manifest edge writes beside every artifact
// (`<artifact>.json`, edge/manifest.py; io sections from exporters/executorch.py and
// exporters/tflite.py). Everything the app needs to feed an artifact comes from here, never from
// constants in the app, so any exported timm model drops in.

class ManifestError(message: String) : RuntimeException(message)

/** Affine int8/uint8 quantization of one tensor: real = (q - zeroPoint) * scale. */
data class QuantParams(val scale: Float, val zeroPoint: Int)

data class TensorSpec(
    val name: String,
    val shape: List<Int>,
    /** "NCHW", "NHWC", or null (not 4-D). */
    val layout: String?,
    /** "float32", "int8", "uint8", ... as numpy names it. */
    val dtype: String,
    val quantization: QuantParams?,
    /** The runtime's own tensor name where it differs from `name` (a .tflite's output). */
    val tensor: String? = null
)

data class Preprocessing(
    /** [C, H, W] as timm's data config gives it. */
    val inputSize: List<Int>,
    val interpolation: String,
    val mean: List<Float>,
    val std: List<Float>,
    val cropPct: Double,
    val cropMode: String
)

data class EdgeManifest(
    val schema: String,
    val artifact: String,
    val artifactSha256: String?,
    val target: String,
    val precision: String?,
    val modelName: String,
    val mode: String,
    val numClasses: Int?,
    val preprocessing: Preprocessing,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    val labels: List<String>?,
    val versions: Map<String, String?>
) {
    val input: TensorSpec get() = inputs[0]

    /** The runtime version the artifact was exported for (the app's runtime should match it). */
    val exportRuntimeVersion: String?
        get() = if (target == "executorch") versions["executorch"] else versions["ai-edge-litert"]

    companion object {
        const val SCHEMA = "edge.manifest/1"

        /** The manifest file edge writes beside an artifact: `<artifact>.json`. */
        fun pathFor(artifactPath: String): String = "$artifactPath.json"

        fun parse(text: String, where: String = "manifest"): EdgeManifest {
            val root = try {
                Json.parse(text)
            } catch (e: JsonError) {
                throw ManifestError("$where is not JSON: ${e.message}")
            }
            return Reader(where).manifest(root)
        }
    }

    private class Reader(val where: String) {
        fun fail(path: String, msg: String): Nothing = throw ManifestError("$where: $path $msg")

        fun obj(v: Any?, path: String): Map<*, *> = v as? Map<*, *> ?: fail(path, "must be an object")
        fun list(v: Any?, path: String): List<*> = v as? List<*> ?: fail(path, "must be a list")
        fun str(m: Map<*, *>, key: String, path: String): String =
            m[key] as? String ?: fail("$path.$key", if (key in m) "must be a string" else "is missing")

        fun optStr(m: Map<*, *>, key: String, path: String): String? {
            if (key !in m) fail("$path.$key", "is missing")
            val v = m[key] ?: return null
            return v as? String ?: fail("$path.$key", "must be a string or null")
        }

        fun num(v: Any?, path: String): Double = v as? Double ?: fail(path, "must be a number")
        fun int(v: Any?, path: String): Int {
            val d = num(v, path)
            if (d != Math.floor(d)) fail(path, "must be an integer")
            return d.toInt()
        }

        fun ints(v: Any?, path: String): List<Int> = list(v, path).mapIndexed { i, x -> int(x, "$path[$i]") }
        fun floats(v: Any?, path: String): List<Float> =
            list(v, path).mapIndexed { i, x -> num(x, "$path[$i]").toFloat() }

        fun tensor(v: Any?, path: String): TensorSpec {
            val m = obj(v, path)
            if ("shape" !in m) fail("$path.shape", "is missing")
            val q = m["quantization"]?.let { obj(it, "$path.quantization") }
            return TensorSpec(
                name = str(m, "name", path),
                shape = ints(m["shape"], "$path.shape"),
                layout = if ("layout" in m) optStr(m, "layout", path) else null,
                dtype = str(m, "dtype", path),
                quantization = q?.let {
                    QuantParams(num(it["scale"], "$path.quantization.scale").toFloat(),
                        int(it["zero_point"], "$path.quantization.zero_point"))
                },
                tensor = m["tensor"] as? String
            )
        }

        fun manifest(root: Any?): EdgeManifest {
            val m = obj(root, "top level")
            val schema = str(m, "schema", "")
            if (schema != SCHEMA) fail(".schema", "is '$schema', expected '$SCHEMA'")
            val model = obj(m["model"], ".model")
            val pre = obj(m["preprocessing"], ".preprocessing")
            val io = obj(m["io"], ".io")
            val inputs = list(io["inputs"], ".io.inputs").mapIndexed { i, t -> tensor(t, ".io.inputs[$i]") }
            if (inputs.size != 1) fail(".io.inputs", "must hold one input (the image), has ${inputs.size}")
            val outputs = list(io["outputs"], ".io.outputs").mapIndexed { i, t -> tensor(t, ".io.outputs[$i]") }
            if (outputs.isEmpty()) fail(".io.outputs", "is empty")
            val labels = m["labels"]?.let { l -> list(l, ".labels").mapIndexed { i, x -> x as? String ?: fail(".labels[$i]", "must be a string") } }
            val versions = LinkedHashMap<String, String?>()
            m["versions"]?.let { v -> for ((k, x) in obj(v, ".versions")) versions[k.toString()] = x as? String }
            val preprocessing = Preprocessing(
                inputSize = ints(pre["input_size"], ".preprocessing.input_size"),
                interpolation = str(pre, "interpolation", ".preprocessing"),
                mean = floats(pre["mean"], ".preprocessing.mean"),
                std = floats(pre["std"], ".preprocessing.std"),
                cropPct = num(pre["crop_pct"], ".preprocessing.crop_pct"),
                cropMode = (if ("crop_mode" in pre) optStr(pre, "crop_mode", ".preprocessing") else null) ?: "center"
            )
            if (preprocessing.inputSize.size != 3) fail(".preprocessing.input_size", "must be [C, H, W]")
            val c = preprocessing.inputSize[0]
            if (preprocessing.mean.size != c || preprocessing.std.size != c)
                fail(".preprocessing", "mean/std must have one value per channel ($c)")
            return EdgeManifest(
                schema = schema,
                artifact = str(m, "artifact", ""),
                artifactSha256 = optStr(m, "artifact_sha256", ""),
                target = str(m, "target", ""),
                precision = optStr(m, "precision", ""),
                modelName = str(model, "name", ".model"),
                mode = str(model, "mode", ".model"),
                numClasses = model["num_classes"]?.let { int(it, ".model.num_classes") },
                preprocessing = preprocessing,
                inputs = inputs,
                outputs = outputs,
                labels = labels,
                versions = versions
            )
        }
    }
}
