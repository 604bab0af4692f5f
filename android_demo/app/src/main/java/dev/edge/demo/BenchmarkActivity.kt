package dev.edge.demo

// Android-specific: the benchmark mode, started over adb (see README):
//   adb shell am start -S -W -n dev.edge.demo/.BenchmarkActivity --es model /data/local/tmp/x.pte \
//       --ei runs 50 --ei threads 4 --ei warmup 5 [--es device LABEL]
// writes one "edge.bench/1" JSON line to files/bench/<artifact>.json (written to a .part file and
// renamed, so the file appears complete or not at all) and logs it under the tag "edge.bench".

import android.app.Activity
import android.os.Bundle
import android.util.Log
import android.widget.TextView
import dev.edge.demo.core.Bench
import dev.edge.demo.core.BenchRun
import dev.edge.demo.core.EdgeManifest
import java.io.File

class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_benchmark)
        val text = findViewById<TextView>(R.id.bench_text)
        val modelPath = intent.getStringExtra("model")
        if (modelPath.isNullOrEmpty()) {
            val msg = "no model given: am start -n $packageName/.BenchmarkActivity --es model /data/local/tmp/x.pte"
            Log.e(TAG, msg)
            text.text = msg
            return
        }
        val model = File(modelPath)
        val out = File(filesDir, Bench.resultPath(model.name))
        out.parentFile?.mkdirs()
        out.delete() // a result left from an earlier run must not be read as this one's
        text.text = getString(R.string.bench_running, model.name)
        Thread {
            val json = run(model)
            val part = File(out.path + ".part")
            part.writeText(json + "\n")
            part.renameTo(out)
            Log.i(TAG, json)
            runOnUiThread { text.text = getString(R.string.bench_done, out.path) + "\n\n" + json }
        }.start()
    }

    /** An int extra (--ei); one given with another type (say --es) is an error, not the default. */
    private fun intExtra(name: String, default: Int): Int {
        val extras = intent.extras ?: return default
        if (!extras.containsKey(name)) return default
        @Suppress("DEPRECATION")
        val v = extras.get(name)
        return v as? Int ?: throw IllegalArgumentException("extra '$name' must be given with --ei (an int), got '$v'")
    }

    /** The whole run; every failure becomes an ok:false result that says why in one line. */
    private fun run(model: File): String {
        val run = BenchRun(model.name, Bench.target(model.name))
        val label = intent.getStringExtra("device")
        try {
            val runs = intExtra("runs", 50)
            val threads = intExtra("threads", 4)
            val warmup = intExtra("warmup", 5)
            if (!model.canRead()) {
                throw IllegalArgumentException("cannot read $model from the app: push it readable (chmod 644) " +
                    "or copy it into the app's files with run-as (see README)")
            }
            val manifest = Models.manifest(model)
            run.precision = manifest.precision
            run.artifactSha256 = Bench.sha256(model)
            val expected = manifest.artifactSha256
            if (expected != null && expected != run.artifactSha256) {
                throw IllegalArgumentException("${model.name} does not match its manifest (sha256 " +
                    "${run.artifactSha256!!.take(12)}... vs ${expected.take(12)}...): corrupt or truncated copy")
            }
            Bench.measure(run, manifest, threads, warmup, runs, { Engines.open(model, manifest, threads) },
                { System.nanoTime() })
            run.peakRssMb = Device.peakRssMb()
        } catch (e: Exception) {
            run.error = Bench.oneLine(e)
        } catch (e: LinkageError) { // a runtime's native library missing for this ABI
            run.error = Bench.oneLine(e)
        }
        return Bench.toJson(run, Device.facts(label))
    }

    companion object {
        const val TAG = "edge.bench"
    }
}
