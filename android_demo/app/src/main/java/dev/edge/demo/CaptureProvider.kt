package dev.edge.demo

// Android-specific: hands the camera app one writable file (cache/capture.jpg) for
// ACTION_IMAGE_CAPTURE, without AndroidX's FileProvider (the app uses platform APIs only).

import android.content.ContentProvider
import android.content.ContentValues
import android.database.Cursor
import android.net.Uri
import android.os.ParcelFileDescriptor
import java.io.File
import java.io.FileNotFoundException

class CaptureProvider : ContentProvider() {
    override fun onCreate(): Boolean = true

    private fun file(): File = File(context!!.cacheDir, FILE_NAME)

    override fun openFile(uri: Uri, mode: String): ParcelFileDescriptor {
        if (uri.lastPathSegment != FILE_NAME) throw FileNotFoundException(uri.toString())
        return ParcelFileDescriptor.open(file(), ParcelFileDescriptor.parseMode(mode))
    }

    override fun getType(uri: Uri): String = "image/jpeg"
    override fun query(uri: Uri, projection: Array<out String>?, selection: String?, selectionArgs: Array<out String>?,
                       sortOrder: String?): Cursor? = null
    override fun insert(uri: Uri, values: ContentValues?): Uri? = null
    override fun delete(uri: Uri, selection: String?, selectionArgs: Array<out String>?): Int = 0
    override fun update(uri: Uri, values: ContentValues?, selection: String?, selectionArgs: Array<out String>?): Int = 0

    companion object {
        const val FILE_NAME = "capture.jpg"
        val URI: Uri = Uri.parse("content://dev.edge.demo.capture/$FILE_NAME")
    }
}
