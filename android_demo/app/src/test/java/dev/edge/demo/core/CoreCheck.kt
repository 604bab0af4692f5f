package dev.edge.demo.core

// The JVM check of the platform-independent code, driven by tests/test_android_demo.py (which
// compares what it writes with edge's Python preprocessing, numpy's quantization and the host's
// bench-result validator). A plain main, because no JUnit is needed to run it with kotlinc here.
//
//   selftest                                    internal invariants (exits 1 on a failure)
//   parse MANIFEST...                           one JSON summary line per manifest
//   preprocess MANIFEST RGB W H OUT_F32 [OUT_Q] tensor (float32 LE, the manifest's input layout)
//   quant IN_F32 SCALE ZERO_POINT DTYPE OUT_Q OUT_DQ
//   topk IN_F32 K MANIFEST                      softmax top-k as JSON
//   bench-result MANIFEST OUT [MS...]           a result from the given latency samples; no samples: a failed one

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

private var failures = 0

private fun expect(cond: Boolean, what: String) {
    if (!cond) {
        failures++
        System.err.println("FAIL: $what")
    }
}

private fun readF32(path: String): FloatArray {
    val b = ByteBuffer.wrap(File(path).readBytes()).order(ByteOrder.LITTLE_ENDIAN)
    return FloatArray(b.remaining() / 4) { b.float }
}

private fun writeF32(path: String, x: FloatArray) {
    val b = ByteBuffer.allocate(x.size * 4).order(ByteOrder.LITTLE_ENDIAN)
    for (v in x) b.putFloat(v)
    File(path).writeBytes(b.array())
}

private fun spec(t: TensorSpec): Map<String, Any?> = linkedMapOf(
    "name" to t.name, "shape" to t.shape, "layout" to t.layout, "dtype" to t.dtype,
    "scale" to t.quantization?.scale?.toDouble(), "zero_point" to t.quantization?.zeroPoint)

private fun summary(m: EdgeManifest): Map<String, Any?> = linkedMapOf(
    "artifact" to m.artifact, "artifact_sha256" to m.artifactSha256, "target" to m.target, "precision" to m.precision,
    "model" to m.modelName, "mode" to m.mode, "num_classes" to m.numClasses,
    "input_size" to m.preprocessing.inputSize, "interpolation" to m.preprocessing.interpolation,
    "mean" to m.preprocessing.mean.map { it.toDouble() }, "std" to m.preprocessing.std.map { it.toDouble() },
    "crop_pct" to m.preprocessing.cropPct, "crop_mode" to m.preprocessing.cropMode,
    "inputs" to m.inputs.map { spec(it) }, "outputs" to m.outputs.map { spec(it) },
    "labels" to m.labels?.size, "first_label" to m.labels?.firstOrNull(),
    "export_runtime_version" to m.exportRuntimeVersion)

private fun manifest(path: String): EdgeManifest = EdgeManifest.parse(File(path).readText(), path)

private fun selftest() {
    val text = "{\"a\": [1, 2.5, -3e2, true, false, null], \"s\": \"q\\\"\\\\\\n\\u00e9\\u0001\", \"o\": {}}"
    val v = Json.parse(text) as Map<*, *>
    expect(v["a"] == listOf(1.0, 2.5, -300.0, true, false, null), "json numbers and literals: ${v["a"]}")
    expect(v["s"] == "q\"\\\n\u00e9\u0001", "json string escapes")
    expect(Json.parse(Json.write(v)) == v, "json write/parse round trip")
    expect(Json.write(listOf(Double.NaN, 1.5f, 3)) == "[null, 1.5, 3]", "non-finite numbers are written as null")
    for (bad in listOf("{", "[1,]", "{\"a\" 1}", "tru", "\"x", "1 2")) {
        var threw = false
        try { Json.parse(bad) } catch (e: JsonError) { threw = true }
        expect(threw, "bad JSON rejected: $bad")
    }
    val good = "{\"schema\": \"edge.manifest/1\", \"artifact\": \"a.pte\", \"artifact_sha256\": null, \"target\": \"executorch\", " +
        "\"precision\": \"fp32\", \"model\": {\"name\": \"m\", \"mode\": \"classifier\", \"num_classes\": 2}, " +
        "\"preprocessing\": {\"input_size\": [3, 4, 4], \"interpolation\": \"bilinear\", \"mean\": [0.5, 0.5, 0.5], " +
        "\"std\": [0.5, 0.5, 0.5], \"crop_pct\": 1.0, \"crop_mode\": \"center\"}, " +
        "\"io\": {\"inputs\": [{\"name\": \"image\", \"shape\": [1, 3, 4, 4], \"layout\": \"NCHW\", \"dtype\": \"float32\"}], " +
        "\"outputs\": [{\"name\": \"logits\", \"shape\": [1, 2], \"dtype\": \"float32\"}]}, \"labels\": [\"a\", \"b\"]}"
    val m = EdgeManifest.parse(good)
    expect(m.input.shape == listOf(1, 3, 4, 4) && m.outputs[0].layout == null && m.labels == listOf("a", "b"), "minimal manifest")
    for ((cut, path) in listOf("\"interpolation\": \"bilinear\", " to ".preprocessing.interpolation",
                               "\"dtype\": \"float32\"}]," to ".io.inputs[0]")) {
        var msg = ""
        try { EdgeManifest.parse(good.replace(cut, if (cut.startsWith("\"dtype")) "\"x\": 1}]," else "")) } catch (e: ManifestError) { msg = e.message ?: "" }
        expect(msg.contains(path), "missing field named in the error: '$msg' should name $path")
    }
    // geometry: torchvision's shortest-edge rule and Python's round-half-even crop offsets
    val pre = m.preprocessing.copy(inputSize = listOf(3, 224, 224), cropPct = 0.875)
    expect(Preprocess.geometry(500, 375, pre) == Geometry(341, 256, 58, 16, 224, 224), "geometry 500x375: ${Preprocess.geometry(500, 375, pre)}")
    expect(Preprocess.geometry(256, 999, pre).resizeH == 999, "no resize when the short edge already fits")
    expect(Preprocess.geometry(257, 224, pre.copy(cropPct = 1.0)).cropLeft == 16, "round half to even: 16.5 -> 16")
    expect(Preprocess.geometry(259, 224, pre.copy(cropPct = 1.0)).cropLeft == 18, "round half to even: 17.5 -> 18")
    // quantization: ties to even and clamping, as numpy's rint/clip
    val q = QuantParams(0.5f, -1)
    val qs = Quant.quantize(floatArrayOf(0.25f, 0.75f, -0.25f, 1000f, -1000f), q, "int8")
    expect(qs.toList() == listOf<Byte>(0, 0, -2, 127, -128), "int8 ties to even (-0.5 -> 0, 0.5 -> 0, -1.5 -> -2) and clamp: ${qs.toList()}")
    expect(Quant.quantize(floatArrayOf(-5f, 200f), QuantParams(1f, 0), "uint8").map { it.toInt() and 0xFF } == listOf(0, 200), "uint8")
    expect(Quant.dequantize(byteArrayOf(-128, 127), q, "int8").toList() == listOf(-63.5f, 64f), "dequantize")
    val p = Classify.softmax(floatArrayOf(1000f, 1000f, -1000f))
    expect(Math.abs(p[0] - 0.5) < 1e-12 && p[2] == 0.0, "softmax is stable for large logits")
    expect(Classify.topK(doubleArrayOf(0.1, 0.4, 0.4, 0.1), 2, null).map { it.index } == listOf(1, 2), "top-k ties by index")
    val st = LatencyStats.of(doubleArrayOf(4.0, 1.0, 3.0, 2.0))
    expect(st == LatencyStats(2.5, 3.7, 1.0, 4.0, 2.5), "percentiles (numpy linear): $st")
    expect(Bench.peakRssMb("Name:\tx\nVmHWM:\t  204800 kB\nVmRSS:\t 1 kB\n") == 200.0, "VmHWM parse")
    expect(Bench.peakRssMb("Name:\tx\n") == null, "no VmHWM -> null")
}

fun main(args: Array<String>) {
    when (args.getOrNull(0)) {
        "selftest" -> {
            selftest()
            if (failures > 0) System.exit(1)
            println("selftest ok")
        }
        "parse" -> for (path in args.drop(1)) println(Json.write(summary(manifest(path))))
        "preprocess" -> {
            val m = manifest(args[1])
            val img = RgbImage(args[3].toInt(), args[4].toInt(), File(args[2]).readBytes())
            val x = Preprocess.run(img, m)
            writeF32(args[5], x)
            if (args.size > 6) {
                val inp = ModelInput.of(m.input, x)
                File(args[6]).writeBytes(inp.bytes ?: throw IllegalStateException("the input is not quantized"))
            }
            println(Json.write(linkedMapOf("geometry" to Preprocess.geometry(img.width, img.height, m.preprocessing).toString(),
                "elements" to x.size)))
        }
        "quant" -> {
            val qp = QuantParams(args[2].toFloat(), args[3].toInt())
            val qb = Quant.quantize(readF32(args[1]), qp, args[4])
            File(args[5]).writeBytes(qb)
            writeF32(args[6], Quant.dequantize(qb, qp, args[4]))
        }
        "topk" -> {
            val m = manifest(args[3])
            val logits = Classify.logitsOf(m, listOf(readF32(args[1])))
            val top = Classify.topK(Classify.softmax(logits), args[2].toInt(), m.labels)
            println(Json.write(top.map { linkedMapOf("index" to it.index, "label" to it.label, "p" to it.probability) }))
        }
        "bench-result" -> {
            val m = manifest(args[1])
            val run = BenchRun(m.artifact, Bench.target(m.artifact))
            run.artifactSha256 = m.artifactSha256
            run.precision = m.precision
            val samples = args.drop(3).map { it.toDouble() }
            val device = DeviceFacts("jvm-check", null, null, null, null, false)
            if (samples.isEmpty()) {
                run.error = Bench.oneLine(ManifestError("${m.artifact}: cannot open the model\nsecond line"))
            } else {
                run.runtime = if (m.target == "executorch") "executorch" else "litert"
                run.threads = 4
                run.warmup = 1
                run.runs = samples.size
                run.loadMs = Bench.round3(12.3456)
                run.firstRunMs = samples[0]
                val st = LatencyStats.of(samples.toDoubleArray())
                run.latency = LatencyStats(Bench.round3(st.p50), Bench.round3(st.p90), Bench.round3(st.min),
                    Bench.round3(st.max), Bench.round3(st.mean))
                Bench.check(run, m, m.outputs.map { ModelOutput(it.shape, FloatArray(1)) })
            }
            File(args[2]).writeText(Bench.toJson(run, device) + "\n")
        }
        else -> {
            System.err.println("usage: selftest | parse | preprocess | quant | topk | bench-result (see the file's header)")
            System.exit(2)
        }
    }
}
