{
  "variables": {
    "quicgate_quic%": "1"
  },
  "targets": [
    {
      "target_name": "quicgate_tun",
      "sources": ["src/tun.cc", "src/gro.cc", "src/gso.cc", "src/alloc.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "libraries": ["-ldl"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ],
  "conditions": [
    ["quicgate_quic==1", {
      "targets": [
        {
          "target_name": "quicgate_quic",
          "sources": ["src/quic/endpoint.cc", "src/quic/tls.cc", "src/quic/udp.cc"],
          "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
          "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
          "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags libngtcp2 libngtcp2_crypto_gnutls gnutls)"],
          "libraries": ["<!@(pkg-config --libs libngtcp2 libngtcp2_crypto_gnutls gnutls)", "-ldl"]
        }
      ]
    }]
  ]
}
