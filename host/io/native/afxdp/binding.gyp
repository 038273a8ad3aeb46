{
  "targets": [
    {
      "target_name": "nvedge_afxdp",
      "sources": ["afxdp.c"],
      "include_dirs": [".."],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lbpf"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags": ["-O2", "-fno-strict-aliasing"]
        }
      }
    }
  ]
}
