package dev.edge.demo.core

// Plain Kotlin (no Android imports). The image -> input tensor path, the same arithmetic as edge's
// Python side (timm's eval transform: torchvision Resize on a PIL image, CenterCrop, ToTensor,
// Normalize), so the phone feeds the artifact what it was calibrated and checked on.
// Android's Bitmap scaling is bilinear without antialiasing, so resizing is done here on the
// pixel array, with Pillow's resampling (separable, antialiased, 8-bit fixed point).

/** Interleaved 8-bit RGB, row-major (what PIL's `Image.convert("RGB").tobytes()` gives). */
class RgbImage(val width: Int, val height: Int, val pixels: ByteArray) {
    init {
        require(width > 0 && height > 0) { "empty image ${width}x$height" }
        require(pixels.size == width * height * 3) { "expected ${width * height * 3} bytes, got ${pixels.size}" }
    }

    fun at(x: Int, y: Int, c: Int): Int = pixels[(y * width + x) * 3 + c].toInt() and 0xFF

    companion object {
        /** From Android's packed ARGB ints (Bitmap.getPixels); alpha is dropped as PIL's convert does. */
        fun fromArgb(width: Int, height: Int, argb: IntArray): RgbImage {
            val out = ByteArray(width * height * 3)
            for (i in 0 until width * height) {
                val p = argb[i]
                out[i * 3] = (p shr 16).toByte()
                out[i * 3 + 1] = (p shr 8).toByte()
                out[i * 3 + 2] = p.toByte()
            }
            return RgbImage(width, height, out)
        }
    }
}

/** Where the resize and crop land for one source image (for tests and the demo's caption). */
data class Geometry(val resizeW: Int, val resizeH: Int, val cropLeft: Int, val cropTop: Int,
                    val cropW: Int, val cropH: Int)

object Preprocess {
    private const val PRECISION_BITS = 32 - 8 - 2 // Pillow's fixed point for 8-bit images

    /** Pillow's filters: support and kernel (Resample.c). */
    private class Filter(val support: Double, val f: (Double) -> Double)

    private fun sinc(x: Double): Double {
        if (x == 0.0) return 1.0
        val px = x * Math.PI
        return Math.sin(px) / px
    }

    private val FILTERS: Map<String, Filter> = mapOf(
        "box" to Filter(0.5) { x -> if (x > -0.5 && x <= 0.5) 1.0 else 0.0 },
        "bilinear" to Filter(1.0) { x -> val a = Math.abs(x); if (a < 1.0) 1.0 - a else 0.0 },
        "hamming" to Filter(1.0) { x ->
            val a = Math.abs(x)
            when {
                a == 0.0 -> 1.0
                a >= 1.0 -> 0.0
                else -> Math.sin(a * Math.PI) / (a * Math.PI) * (0.54f.toDouble() + 0.46f.toDouble() * Math.cos(a * Math.PI))
            }
        },
        "bicubic" to Filter(2.0) { x ->
            val a = -0.5
            val t = Math.abs(x)
            when {
                t < 1.0 -> ((a + 2.0) * t - (a + 3.0)) * t * t + 1
                t < 2.0 -> (((t - 5) * t + 8) * t - 4) * a
                else -> 0.0
            }
        },
        "lanczos" to Filter(3.0) { x -> if (x >= -3.0 && x < 3.0) sinc(x) * sinc(x / 3.0) else 0.0 }
    )

    val interpolations: Set<String> get() = FILTERS.keys + "nearest"

    /** timm's eval geometry: shortest edge to floor(size / crop_pct) (torchvision's rule for the
     *  long edge), then a centre crop with Python's round-half-even offsets; "squash" resizes
     *  both edges to floor(size / crop_pct). */
    fun geometry(width: Int, height: Int, pre: Preprocessing): Geometry {
        val h = pre.inputSize[1]
        val w = pre.inputSize[2]
        val scaleH = Math.floor(h / pre.cropPct).toInt()
        val scaleW = Math.floor(w / pre.cropPct).toInt()
        val rw: Int
        val rh: Int
        when (pre.cropMode) {
            "squash" -> { rw = scaleW; rh = scaleH }
            "center" -> {
                if (scaleH != scaleW) throw ManifestError("crop_mode center with a non-square input ${h}x$w is not supported")
                val size = scaleH
                if (width <= height) {
                    rw = size
                    rh = if (width == size) height else (size.toLong() * height / width).toInt()
                } else {
                    rh = size
                    rw = if (height == size) width else (size.toLong() * width / height).toInt()
                }
            }
            else -> throw ManifestError("crop_mode '${pre.cropMode}' is not supported (center, squash)")
        }
        val top = Math.rint((rh - h) / 2.0).toInt()
        val left = Math.rint((rw - w) / 2.0).toInt()
        return Geometry(rw, rh, left, top, w, h)
    }

    /** Pillow's Image.resize for RGB (antialiased: the kernel widens by the downscale factor). */
    fun resize(img: RgbImage, outW: Int, outH: Int, interpolation: String): RgbImage {
        if (outW == img.width && outH == img.height) return img
        if (interpolation == "nearest") return nearest(img, outW, outH)
        val filter = FILTERS[interpolation]
            ?: throw ManifestError("interpolation '$interpolation' is not supported (${interpolations.sorted().joinToString()})")
        var cur = img
        if (outW != cur.width) cur = pass(cur, outW, filter, horizontal = true)
        if (outH != cur.height) cur = pass(cur, outH, filter, horizontal = false)
        return cur
    }

    private class Coeffs(val bounds: IntArray, val k: IntArray, val ksize: Int)

    private fun coeffs(inSize: Int, outSize: Int, filter: Filter): Coeffs {
        val scale = inSize.toDouble() / outSize
        val filterscale = Math.max(scale, 1.0)
        val support = filter.support * filterscale
        val ksize = Math.ceil(support).toInt() * 2 + 1
        val bounds = IntArray(outSize * 2)
        val k = IntArray(outSize * ksize)
        val w = DoubleArray(ksize)
        for (xx in 0 until outSize) {
            val center = (xx + 0.5) * scale
            val ss = 1.0 / filterscale
            var xmin = (center - support + 0.5).toInt()
            if (xmin < 0) xmin = 0
            var xmax = (center + support + 0.5).toInt()
            if (xmax > inSize) xmax = inSize
            xmax -= xmin
            var ww = 0.0
            for (x in 0 until xmax) {
                val v = filter.f((x + xmin - center + 0.5) * ss)
                w[x] = v
                ww += v
            }
            for (x in 0 until ksize) {
                val v = if (x < xmax && ww != 0.0) w[x] / ww else 0.0
                // Pillow rounds the normalised weights to fixed point half away from zero
                k[xx * ksize + x] = if (v < 0) (-0.5 + v * (1 shl PRECISION_BITS)).toInt()
                else (0.5 + v * (1 shl PRECISION_BITS)).toInt()
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        return Coeffs(bounds, k, ksize)
    }

    private fun clip8(v: Long): Int {
        val s = v shr PRECISION_BITS
        return if (s < 0) 0 else if (s > 255) 255 else s.toInt()
    }

    private fun pass(img: RgbImage, outSize: Int, filter: Filter, horizontal: Boolean): RgbImage {
        val inSize = if (horizontal) img.width else img.height
        val c = coeffs(inSize, outSize, filter)
        val ow = if (horizontal) outSize else img.width
        val oh = if (horizontal) img.height else outSize
        val out = ByteArray(ow * oh * 3)
        val half = 1L shl (PRECISION_BITS - 1)
        for (y in 0 until oh) {
            for (x in 0 until ow) {
                val o = if (horizontal) x else y
                val min = c.bounds[o * 2]
                val n = c.bounds[o * 2 + 1]
                for (ch in 0 until 3) {
                    var ss = half
                    for (j in 0 until n) {
                        val px = if (horizontal) img.at(min + j, y, ch) else img.at(x, min + j, ch)
                        ss += px.toLong() * c.k[o * c.ksize + j]
                    }
                    out[(y * ow + x) * 3 + ch] = clip8(ss).toByte()
                }
            }
        }
        return RgbImage(ow, oh, out)
    }

    /** Pillow's NEAREST: the source pixel under each output pixel's centre. */
    private fun nearest(img: RgbImage, outW: Int, outH: Int): RgbImage {
        val out = ByteArray(outW * outH * 3)
        val sx = img.width.toDouble() / outW
        val sy = img.height.toDouble() / outH
        for (y in 0 until outH) {
            val yi = Math.min(((y + 0.5) * sy).toInt(), img.height - 1)
            for (x in 0 until outW) {
                val xi = Math.min(((x + 0.5) * sx).toInt(), img.width - 1)
                for (ch in 0 until 3) out[(y * outW + x) * 3 + ch] = img.pixels[(yi * img.width + xi) * 3 + ch]
            }
        }
        return RgbImage(outW, outH, out)
    }

    /** torchvision's center_crop: zero padding where the crop reaches past the image. */
    fun crop(img: RgbImage, g: Geometry): RgbImage {
        val out = ByteArray(g.cropW * g.cropH * 3)
        for (y in 0 until g.cropH) {
            val sy = y + g.cropTop
            if (sy < 0 || sy >= img.height) continue
            for (x in 0 until g.cropW) {
                val sx = x + g.cropLeft
                if (sx < 0 || sx >= img.width) continue
                for (ch in 0 until 3) out[(y * g.cropW + x) * 3 + ch] = img.pixels[(sy * img.width + sx) * 3 + ch]
            }
        }
        return RgbImage(g.cropW, g.cropH, out)
    }

    /** The float tensor (batch 1) in the artifact's input layout: (v / 255 - mean) / std in float32,
     *  as ToTensor + Normalize compute it. */
    fun tensor(img: RgbImage, pre: Preprocessing, layout: String): FloatArray {
        val c = pre.inputSize[0]
        if (c != 3) throw ManifestError("only 3-channel RGB inputs are supported, the manifest has $c channels")
        val h = img.height
        val w = img.width
        val out = FloatArray(3 * h * w)
        val nchw = when (layout) {
            "NCHW" -> true
            "NHWC" -> false
            else -> throw ManifestError("input layout '$layout' is not supported (NCHW, NHWC)")
        }
        for (y in 0 until h) for (x in 0 until w) for (ch in 0 until 3) {
            val v = (img.at(x, y, ch).toFloat() / 255f - pre.mean[ch]) / pre.std[ch]
            out[if (nchw) (ch * h + y) * w + x else (y * w + x) * 3 + ch] = v
        }
        return out
    }

    /** The whole path for one manifest: resize, crop, normalise, lay out. */
    fun run(img: RgbImage, manifest: EdgeManifest): FloatArray {
        val pre = manifest.preprocessing
        val g = geometry(img.width, img.height, pre)
        val cropped = crop(resize(img, g.resizeW, g.resizeH, pre.interpolation), g)
        val spec = manifest.input
        val layout = spec.layout ?: "NCHW"
        val expected = if (layout == "NHWC") listOf(1, g.cropH, g.cropW, 3) else listOf(1, 3, g.cropH, g.cropW)
        if (spec.shape != expected)
            throw ManifestError("input shape ${spec.shape} does not match the preprocessing ($expected in $layout)")
        return tensor(cropped, pre, layout)
    }
}
