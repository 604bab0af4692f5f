package dev.edge.demo

// Android-specific: the demo. Pick (photo picker / ACTION_GET_CONTENT) or take a photo, run it
// through the chosen .pte/.tflite with the preprocessing its manifest records, show the top 5.

import android.app.Activity
import android.content.Intent
import android.os.Build
import android.os.Bundle
import android.provider.MediaStore
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.ImageView
import android.widget.Spinner
import android.widget.TextView
import dev.edge.demo.core.Classify
import dev.edge.demo.core.EdgeManifest
import dev.edge.demo.core.Engine
import dev.edge.demo.core.ModelInput
import dev.edge.demo.core.Preprocess
import java.io.File
import java.util.concurrent.Executors

class MainActivity : Activity() {
    private val worker = Executors.newSingleThreadExecutor()
    private var models: List<File> = emptyList()
    private var model: File? = null
    private var manifest: EdgeManifest? = null
    private var engine: Engine? = null // opened on first use, for (model, threads)
    private var engineKey: String? = null

    private lateinit var modelText: TextView
    private lateinit var resultText: TextView
    private lateinit var preview: ImageView
    private lateinit var threadsEdit: EditText

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        modelText = findViewById(R.id.model_text)
        resultText = findViewById(R.id.result_text)
        preview = findViewById(R.id.preview)
        threadsEdit = findViewById(R.id.threads_edit)
        findViewById<Button>(R.id.pick_button).setOnClickListener { pick() }
        findViewById<Button>(R.id.capture_button).setOnClickListener { capture() }
        val spinner = findViewById<Spinner>(R.id.model_spinner)
        worker.execute {
            val found = Models.list(this)
            runOnUiThread {
                models = found
                if (found.isEmpty()) modelText.setText(R.string.no_models)
                spinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, found.map { it.name })
                spinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
                    override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = select(models[position])
                    override fun onNothingSelected(parent: AdapterView<*>?) {}
                }
            }
        }
    }

    private fun select(file: File) {
        worker.execute {
            engine?.close()
            engine = null
            engineKey = null
            val text = try {
                val m = Models.manifest(file)
                manifest = m
                model = file
                describe(file, m)
            } catch (e: Exception) {
                manifest = null
                model = null
                "${file.name}: ${e.message}"
            }
            runOnUiThread { modelText.text = text }
        }
    }

    private fun describe(file: File, m: EdgeManifest): String {
        val p = m.preprocessing
        val inp = m.input
        val app = if (m.target == "executorch") BuildConfig.EXECUTORCH_VERSION else BuildConfig.LITERT_VERSION
        val exported = m.exportRuntimeVersion
        val warn = if (exported != null && exported != app)
            "\nnote: exported with ${m.target} runtime $exported, this app has $app" else ""
        return "${m.modelName} (${m.mode}) ${m.target} ${m.precision ?: ""} from ${file.parent}\n" +
            "input ${inp.shape} ${inp.layout ?: ""} ${inp.dtype}" +
            (inp.quantization?.let { " scale ${it.scale} zero point ${it.zeroPoint}" } ?: "") + "\n" +
            "resize ${p.interpolation} crop_pct ${p.cropPct} ${p.cropMode}, mean ${p.mean} std ${p.std}" + warn
    }

    private fun threads(): Int = threadsEdit.text.toString().toIntOrNull()?.coerceAtLeast(0) ?: 4

    private fun pick() {
        val intent = if (Build.VERSION.SDK_INT >= 33) Intent(MediaStore.ACTION_PICK_IMAGES)
        else Intent(Intent.ACTION_GET_CONTENT).setType("image/*").addCategory(Intent.CATEGORY_OPENABLE)
        startActivityForResult(intent, REQUEST_PICK)
    }

    private fun capture() {
        val intent = Intent(MediaStore.ACTION_IMAGE_CAPTURE)
            .putExtra(MediaStore.EXTRA_OUTPUT, CaptureProvider.URI)
            .addFlags(Intent.FLAG_GRANT_WRITE_URI_PERMISSION or Intent.FLAG_GRANT_READ_URI_PERMISSION)
        startActivityForResult(intent, REQUEST_CAPTURE)
    }

    @Deprecated("platform API; the app avoids AndroidX's activity-result library")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        super.onActivityResult(requestCode, resultCode, data)
        if (resultCode != RESULT_OK) return
        val uri = when (requestCode) {
            REQUEST_PICK -> data?.data
            REQUEST_CAPTURE -> CaptureProvider.URI
            else -> null
        } ?: return
        val m = manifest
        val file = model
        if (m == null || file == null) {
            resultText.text = modelText.text
            return
        }
        resultText.setText(R.string.working)
        val threads = threads()
        worker.execute {
            val text = try {
                classify(uri, file, m, threads)
            } catch (e: Exception) {
                "error: ${e.message}"
            } catch (e: LinkageError) {
                "error: the ${m.target} runtime's native library did not load: ${e.message}"
            }
            runOnUiThread { resultText.text = text }
        }
    }

    private fun classify(uri: android.net.Uri, file: File, m: EdgeManifest, threads: Int): String {
        val p = m.preprocessing
        val resizeEdge = Math.floor(Math.min(p.inputSize[1], p.inputSize[2]) / p.cropPct).toInt()
        val bitmap = Images.decode(this, uri, resizeEdge)
        runOnUiThread { preview.setImageBitmap(bitmap) }
        val t0 = System.nanoTime()
        val x = Preprocess.run(Images.rgb(bitmap), m)
        val input = ModelInput.of(m.input, x)
        val t1 = System.nanoTime()
        val key = "${file.absolutePath}@$threads"
        var loadMs = 0.0
        if (engineKey != key) {
            engine?.close()
            val l0 = System.nanoTime()
            engine = Engines.open(file, m, threads)
            loadMs = (System.nanoTime() - l0) / 1e6
            engineKey = key
        }
        val e = engine!!
        val t2 = System.nanoTime()
        val outs = e.forward(input)
        val t3 = System.nanoTime()
        val top = Classify.topK(Classify.softmax(Classify.logitsOf(m, outs.map { it.values })), 5, m.labels)
        val sb = StringBuilder()
        for (pr in top) sb.append(String.format("%6.2f%%  %s\n", pr.probability * 100, pr.label))
        sb.append(String.format("\npreprocess %.1f ms, inference %.1f ms (%s %s, %d threads)",
            (t1 - t0) / 1e6, (t3 - t2) / 1e6, e.runtime, e.runtimeVersion ?: "", threads))
        if (loadMs > 0) sb.append(String.format(", load %.0f ms", loadMs))
        sb.append(String.format("\nimage %dx%d", bitmap.width, bitmap.height))
        return sb.toString()
    }

    override fun onDestroy() {
        worker.execute { engine?.close() }
        worker.shutdown()
        super.onDestroy()
    }

    companion object {
        private const val REQUEST_PICK = 1
        private const val REQUEST_CAPTURE = 2
    }
}
