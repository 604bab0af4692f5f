package dev.edge.demo

// Android-specific helpers: where models live, image decoding, device facts.

import android.content.Context
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.Matrix
import android.media.ExifInterface
import android.net.Uri
import android.os.Build
import dev.edge.demo.core.DeviceFacts
import dev.edge.demo.core.EdgeManifest
import dev.edge.demo.core.ManifestError
import dev.edge.demo.core.RgbImage
import java.io.File

object Models {
    /** Where pushed models are looked for besides the app's own files/models. */
    const val PUSHED_DIR = "/data/local/tmp/edge"

    private fun isModel(name: String) = name.endsWith(".pte") || name.endsWith(".tflite")

    /** Bundled models (assets/) are copied once to files/models (runtimes open files by path). */
    fun copyAssets(context: Context): File {
        val dir = File(context.filesDir, "models").apply { mkdirs() }
        val assets = context.assets.list("")?.toList() ?: emptyList()
        @Suppress("DEPRECATION")
        val installed = context.packageManager.getPackageInfo(context.packageName, 0).lastUpdateTime
        for (name in assets.filter { isModel(it) }) {
            for (file in listOf(name, EdgeManifest.pathFor(name))) {
                if (file !in assets) continue
                val dest = File(dir, file)
                if (dest.isFile && dest.lastModified() >= installed) continue // copied since this APK was installed
                val tmp = File(dir, "$file.part")
                context.assets.open(file).use { input -> tmp.outputStream().use { input.copyTo(it) } }
                tmp.renameTo(dest)
            }
        }
        return dir
    }

    /** Models in files/models and /data/local/tmp/edge (the latter only where the shell made it readable). */
    fun list(context: Context): List<File> {
        val dirs = listOf(copyAssets(context), File(PUSHED_DIR))
        return dirs.flatMap { d -> d.listFiles()?.filter { isModel(it.name) }?.sortedBy { it.name } ?: emptyList() }
    }

    fun manifest(model: File): EdgeManifest {
        val f = File(EdgeManifest.pathFor(model.absolutePath))
        if (!f.isFile) throw ManifestError("no manifest beside ${model.name}: push ${f.name} (written by `edge export`) with it")
        return EdgeManifest.parse(f.readText(), f.name)
    }
}

object Images {
    /** Decodes [uri] upright (EXIF orientation applied), subsampled by powers of two only while the
     *  short edge stays at least 4x the model's resize edge (so the antialiased resize still sees
     *  the detail it would see at full resolution). */
    fun decode(context: Context, uri: Uri, resizeEdge: Int): Bitmap {
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        context.contentResolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, bounds) }
        if (bounds.outWidth <= 0) throw ManifestError("cannot decode the image")
        var sample = 1
        while (Math.min(bounds.outWidth, bounds.outHeight) / (sample * 2) >= resizeEdge * 4) sample *= 2
        val opts = BitmapFactory.Options().apply {
            inSampleSize = sample
            inPreferredConfig = Bitmap.Config.ARGB_8888
        }
        val bmp = context.contentResolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, opts) }
            ?: throw ManifestError("cannot decode the image")
        val orientation = context.contentResolver.openInputStream(uri).use {
            if (it == null) ExifInterface.ORIENTATION_NORMAL
            else ExifInterface(it).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL)
        }
        val m = Matrix()
        when (orientation) {
            ExifInterface.ORIENTATION_ROTATE_90 -> m.postRotate(90f)
            ExifInterface.ORIENTATION_ROTATE_180 -> m.postRotate(180f)
            ExifInterface.ORIENTATION_ROTATE_270 -> m.postRotate(270f)
            ExifInterface.ORIENTATION_FLIP_HORIZONTAL -> m.postScale(-1f, 1f)
            ExifInterface.ORIENTATION_FLIP_VERTICAL -> m.postScale(1f, -1f)
            else -> return bmp
        }
        return Bitmap.createBitmap(bmp, 0, 0, bmp.width, bmp.height, m, false)
    }

    fun rgb(bitmap: Bitmap): RgbImage {
        val px = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(px, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        return RgbImage.fromArgb(bitmap.width, bitmap.height, px)
    }
}

object Device {
    /** The bench schema's device facts; [name] is the host's label when it gave one. */
    fun facts(name: String?): DeviceFacts {
        val soc = if (Build.VERSION.SDK_INT >= 31) Build.SOC_MODEL else null
        val emulated = Build.HARDWARE in setOf("ranchu", "goldfish") || Build.FINGERPRINT.contains("generic")
        return DeviceFacts(
            name = name ?: "${Build.MANUFACTURER} ${Build.MODEL}",
            cpu = if (soc != null && soc != Build.UNKNOWN) soc else Build.HARDWARE,
            cores = Runtime.getRuntime().availableProcessors(),
            os = "Android ${Build.VERSION.RELEASE}",
            arch = System.getProperty("os.arch"),
            emulated = emulated)
    }

    fun peakRssMb(): Double? =
        try { dev.edge.demo.core.Bench.peakRssMb(File("/proc/self/status").readText()) } catch (e: java.io.IOException) { null }
}
