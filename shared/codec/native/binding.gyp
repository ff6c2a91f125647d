{
  "targets": [
    {
      "target_name": "snapfleet_codec",
      "sources": ["snapfleet_codec.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O3"],
      "libraries": ["-lzstd", "-llz4"]
    }
  ]
}
