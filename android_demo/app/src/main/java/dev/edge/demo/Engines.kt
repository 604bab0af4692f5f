package dev.edge.demo

// Android-specific: the two runtimes behind the platform-independent Engine interface.

import dev.edge.demo.core.Engine
import dev.edge.demo.core.EdgeManifest
import dev.edge.demo.core.ManifestError
import dev.edge.demo.core.ModelInput
import dev.edge.demo.core.ModelOutput
import dev.edge.demo.core.Quant
import dev.edge.demo.core.QuantParams
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter

object Engines {
    /** Opens [model] on the runtime its suffix names, with [threads] CPU threads (0: the runtime's default). */
    fun open(model: File, manifest: EdgeManifest, threads: Int): Engine = when {
        model.name.endsWith(".pte") -> ExecuTorchEngine(model, threads)
        model.name.endsWith(".tflite") -> LiteRtEngine(model, manifest, threads)
        else -> throw ManifestError("${model.name}: not a .pte or .tflite")
    }
}

/** ExecuTorch (org.pytorch:executorch-android): Module.load, Tensor.fromBlob, EValue, forward. */
class ExecuTorchEngine(model: File, threads: Int) : Engine {
    private val module: Module = Module.load(model.absolutePath, Module.LOAD_MODE_MMAP, threads)

    init {
        module.loadMethod("forward") // so load time includes method init, as the host runners count it
    }

    override val runtime = "executorch"
    override val runtimeVersion: String? = BuildConfig.EXECUTORCH_VERSION

    override fun forward(input: ModelInput): List<ModelOutput> {
        val shape = LongArray(input.shape.size) { input.shape[it].toLong() }
        val floats = input.floats
        val tensor = if (floats != null) Tensor.fromBlob(floats, shape) else Tensor.fromBlob(input.bytes!!, shape)
        return module.forward(EValue.from(tensor)).map { v ->
            val t = v.toTensor()
            ModelOutput(t.shape().map { it.toInt() }, t.dataAsFloatArray)
        }
    }

    override fun close() {
        module.destroy()
    }
}

/** LiteRT's Interpreter API (com.google.ai.edge.litert:litert) with the XNNPACK delegate on the CPU.
 *  Outputs come back in the manifest's order (onnx2tf does not keep the ONNX output order). */
class LiteRtEngine(model: File, private val manifest: EdgeManifest, threads: Int) : Engine {
    private val interpreter: Interpreter
    private val outputIndex: IntArray
    private val outputs: Array<ByteBuffer>

    init {
        val options = Interpreter.Options().setUseXNNPACK(true)
        if (threads > 0) options.setNumThreads(threads)
        interpreter = Interpreter(model, options)
        interpreter.allocateTensors()
        val names = (0 until interpreter.outputTensorCount).map { interpreter.getOutputTensor(it).name() }
        outputIndex = IntArray(manifest.outputs.size) { i ->
            val spec = manifest.outputs[i]
            val j = names.indexOf(spec.tensor ?: spec.name)
            if (j >= 0) j else if (manifest.outputs.size == names.size) i
            else throw ManifestError("${model.name} has no output tensor '${spec.tensor ?: spec.name}' (has $names)")
        }
        outputs = Array(interpreter.outputTensorCount) { j ->
            ByteBuffer.allocateDirect(interpreter.getOutputTensor(j).numBytes()).order(ByteOrder.nativeOrder())
        }
    }

    override val runtime = "litert"
    override val runtimeVersion: String? = BuildConfig.LITERT_VERSION

    override fun forward(input: ModelInput): List<ModelOutput> {
        val t = interpreter.getInputTensor(0)
        val buf = ByteBuffer.allocateDirect(t.numBytes()).order(ByteOrder.nativeOrder())
        val floats = input.floats
        if (floats != null) {
            if (t.dataType() != DataType.FLOAT32) throw ManifestError("the model's input is ${t.dataType()}, the manifest says float32")
            buf.asFloatBuffer().put(floats)
        } else {
            buf.put(input.bytes!!)
        }
        buf.rewind()
        for (o in outputs) o.rewind()
        val map = HashMap<Int, Any>()
        for (j in outputs.indices) map[j] = outputs[j]
        interpreter.runForMultipleInputsOutputs(arrayOf<Any>(buf), map)
        return outputIndex.map { j ->
            val ot = interpreter.getOutputTensor(j)
            val data = outputs[j]
            data.rewind()
            val values = when (ot.dataType()) {
                DataType.FLOAT32 -> FloatArray(ot.numElements()).also { data.asFloatBuffer().get(it) }
                DataType.INT8, DataType.UINT8 -> {
                    val bytes = ByteArray(ot.numElements()).also { data.get(it) }
                    val q = ot.quantizationParams()
                    Quant.dequantize(bytes, QuantParams(q.scale, q.zeroPoint),
                        if (ot.dataType() == DataType.INT8) "int8" else "uint8")
                }
                else -> throw ManifestError("output ${ot.name()} has type ${ot.dataType()} (float32, int8, uint8 are read)")
            }
            ModelOutput(ot.shape().toList(), values)
        }
    }

    override fun close() {
        interpreter.close()
    }
}
