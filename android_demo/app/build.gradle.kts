plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

val executorchVersion: String by project
val litertVersion: String by project

android {
    namespace = "dev.edge.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.edge.demo"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        // The runtime versions the app is built with: reported as runtime_version in bench results.
        buildConfigField("String", "EXECUTORCH_VERSION", "\"$executorchVersion\"")
        buildConfigField("String", "LITERT_VERSION", "\"$litertVersion\"")
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64") // the ABIs ExecuTorch's AAR ships
        }
    }

    buildFeatures {
        buildConfig = true
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    // Models are mmapped / read from files; keep bundled ones uncompressed.
    androidResources {
        noCompress += listOf("pte", "tflite")
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
}

dependencies {
    implementation("org.pytorch:executorch-android:$executorchVersion")
    implementation("com.google.ai.edge.litert:litert:$litertVersion")
    // The JVM check of the platform-independent code (src/test: CoreCheck.kt) is a plain main; the
    // project's CI runs it with kotlinc (tests/test_android_demo.py). JUnit for `./gradlew test`:
    testImplementation("junit:junit:4.13.2")
}
