package dev.edge.demo.core

// Plain Kotlin (no Android imports). The benchmark loop and its "edge.bench/1" result: the same
// protocol as edge's Python device runner (edge/bench/device_runner.py): the first forward is
// the first warm-up run (or the first timed run when warmup is 0), latency percentiles as numpy's
// default (linear), milliseconds rounded to 3 decimals, anything not measured is null.

data class DeviceFacts(val name: String, val cpu: String?, val cores: Int?, val os: String?,
                       val arch: String?, val emulated: Boolean)

data class LatencyStats(val p50: Double, val p90: Double, val min: Double, val max: Double, val mean: Double) {
    companion object {
        /** numpy.percentile's default ("linear"): rank q/100 * (n - 1), interpolated. */
        fun percentile(sorted: DoubleArray, q: Double): Double {
            val pos = q / 100.0 * (sorted.size - 1)
            val lo = Math.floor(pos).toInt()
            val hi = Math.min(lo + 1, sorted.size - 1)
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
        }

        fun of(samplesMs: DoubleArray): LatencyStats {
            require(samplesMs.isNotEmpty()) { "no samples" }
            val s = samplesMs.copyOf()
            s.sort()
            var sum = 0.0
            for (v in s) sum += v
            return LatencyStats(percentile(s, 50.0), percentile(s, 90.0), s[0], s[s.size - 1], sum / s.size)
        }
    }
}

/** Everything one benchmark run measured; null where it did not get that far. */
class BenchRun(val artifact: String, val target: String?) {
    var artifactSha256: String? = null
    var precision: String? = null
    var runtime: String? = null
    var runtimeVersion: String? = null
    var threads: Int? = null
    var warmup: Int? = null
    var runs: Int? = null
    var loadMs: Double? = null
    var firstRunMs: Double? = null
    var latency: LatencyStats? = null
    var peakRssMb: Double? = null
    var outputShapes: List<List<Int>>? = null
    var finite: Boolean? = null
    var shapeOk: Boolean? = null
    var error: String? = null
}

object Bench {
    const val SCHEMA = "edge.bench/1"
    const val RUNNER = "android_demo"
    /** The seed of the benchmark input (standard normal, the scale of a normalised image). */
    const val SEED = 0L

    fun ms(nanos: Long): Double = round3(nanos / 1e6)

    fun round3(v: Double): Double = Math.round(v * 1000.0) / 1000.0

    /** Where the app writes a result, relative to its files dir: bench/<artifact>.json. */
    fun resultPath(artifact: String): String = "bench/$artifact.json"

    fun target(artifact: String): String? = when {
        artifact.endsWith(".pte") -> "executorch"
        artifact.endsWith(".tflite") -> "tflite"
        else -> null
    }

    /** Peak resident set (VmHWM) from /proc/self/status text, in MB (kB / 1024), or null. */
    fun peakRssMb(procStatus: String): Double? {
        for (line in procStatus.split('\n')) {
            if (line.startsWith("VmHWM:")) {
                val kb = line.substring(6).trim().split(' ')[0].toLongOrNull() ?: return null
                return round3(kb / 1024.0)
            }
        }
        return null
    }

    /** The artifact's sha256 (hex), to check a pushed copy against its manifest. */
    fun sha256(file: java.io.File): String {
        val md = java.security.MessageDigest.getInstance("SHA-256")
        file.inputStream().use { s ->
            val buf = ByteArray(1 shl 20)
            while (true) {
                val n = s.read(buf)
                if (n < 0) break
                md.update(buf, 0, n)
            }
        }
        val sb = StringBuilder()
        for (b in md.digest()) sb.append(String.format("%02x", b.toInt() and 0xFF))
        return sb.toString()
    }

    /** A deterministic input for the artifact's input tensor (java.util.Random gaussian, seed 0). */
    fun input(spec: TensorSpec): ModelInput {
        var n = 1
        for (d in spec.shape) n *= d
        val rng = java.util.Random(SEED)
        val x = FloatArray(n) { rng.nextGaussian().toFloat() }
        return ModelInput.of(spec, x)
    }

    /** Warm-up then timed forwards; fills [run] as it goes, so a failure keeps what was measured. */
    fun measure(run: BenchRun, manifest: EdgeManifest, threads: Int, warmup: Int, runs: Int,
                load: () -> Engine, clock: () -> Long) {
        if (runs < 1 || warmup < 0 || threads < 0) throw IllegalArgumentException("runs must be at least 1, warmup and threads at least 0")
        run.threads = threads
        run.warmup = warmup
        run.runs = runs
        run.precision = manifest.precision
        val x = input(manifest.input)
        val t0 = clock()
        val engine = load()
        run.loadMs = ms(clock() - t0)
        engine.use { e ->
            run.runtime = e.runtime
            run.runtimeVersion = e.runtimeVersion
            var t = clock()
            var outs = e.forward(x)
            val first = clock() - t
            run.firstRunMs = ms(first)
            for (i in 0 until Math.max(warmup - 1, 0)) outs = e.forward(x)
            val times = ArrayList<Double>()
            if (warmup == 0) times.add(first / 1e6)
            while (times.size < runs) {
                t = clock()
                outs = e.forward(x)
                times.add((clock() - t) / 1e6)
            }
            val st = LatencyStats.of(times.toDoubleArray())
            run.latency = LatencyStats(round3(st.p50), round3(st.p90), round3(st.min), round3(st.max), round3(st.mean))
            check(run, manifest, outs)
        }
    }

    /** Output shapes against the manifest's, and finiteness; the problems become the error. */
    fun check(run: BenchRun, manifest: EdgeManifest, outs: List<ModelOutput>) {
        val shapes = outs.map { it.shape }
        run.outputShapes = shapes
        run.finite = outs.all { o -> o.values.all { !it.isNaN() && !it.isInfinite() } }
        run.shapeOk = shapes == manifest.outputs.map { it.shape }
        val problems = ArrayList<String>()
        if (run.finite == false) problems.add("outputs are not finite (NaN/inf)")
        if (run.shapeOk == false) problems.add("output shapes $shapes differ from the manifest's ${manifest.outputs.map { it.shape }}")
        if (problems.isNotEmpty()) run.error = problems.joinToString("; ")
    }

    /** The "edge.bench/1" object (key order as the schema lists it). */
    fun result(run: BenchRun, device: DeviceFacts): Map<String, Any?> {
        val lat = run.latency
        val ok = run.error == null && run.latency != null
        val m = LinkedHashMap<String, Any?>()
        m["schema"] = SCHEMA
        m["artifact"] = run.artifact
        m["artifact_sha256"] = run.artifactSha256
        m["target"] = run.target
        m["precision"] = run.precision
        m["runner"] = RUNNER
        m["runtime"] = run.runtime
        m["runtime_version"] = run.runtimeVersion
        m["threads"] = run.threads
        m["warmup"] = run.warmup
        m["runs"] = run.runs
        m["load_ms"] = run.loadMs
        m["first_run_ms"] = run.firstRunMs
        m["latency_ms"] = linkedMapOf("p50" to lat?.p50, "p90" to lat?.p90, "min" to lat?.min, "max" to lat?.max,
            "mean" to lat?.mean)
        m["peak_rss_mb"] = run.peakRssMb
        m["output"] = linkedMapOf("shapes" to run.outputShapes, "finite" to run.finite, "shape_ok" to run.shapeOk)
        m["device"] = linkedMapOf("name" to device.name, "cpu" to device.cpu, "cores" to device.cores,
            "os" to device.os, "arch" to device.arch, "emulated" to device.emulated)
        m["ok"] = ok
        m["error"] = if (ok) null else (run.error ?: "the benchmark did not finish")
        return m
    }

    /** One line of JSON, as every runner prints it. */
    fun toJson(run: BenchRun, device: DeviceFacts): String = Json.write(result(run, device))

    /** One line for an error message (the schema's error is one line). */
    fun oneLine(t: Throwable): String {
        val msg = (t.message ?: t.javaClass.simpleName).trim()
        val first = msg.split('\n')[0]
        return if (t is ManifestError || t is IllegalArgumentException) first else "${t.javaClass.simpleName}: $first"
    }
}
