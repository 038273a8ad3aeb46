{
  "targets": [
    {
      "target_name": "nvedge_afpacket",
      "sources": ["afpacket.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags": ["-O2", "-fno-strict-aliasing"]
        }
      }
    },
    {
      "target_name": "nvedge_tuntx",
      "sources": ["tuntx.c", "tuntx_lab.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags": ["-O2", "-fno-strict-aliasing"]
        }
      }
    }
  ]
}
