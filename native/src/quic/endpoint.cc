// quicgate QUIC addon: the project's own QUIC datagram transport (docs/quic-route.md, route b) on Debian's
// ngtcp2 + GnuTLS. One QuicEndpoint = one UDP socket (a server's listening one, or a client's own) owning
// its ngtcp2 connections; everything runs on the JS thread from libuv callbacks (uv_poll on the socket, ONE
// uv_timer per endpoint for every connection's ngtcp2 expiry) and no JS timer ticks per connection.
//
// Wire: QUIC v1, ALPN given by JS ("quicgate/1"), RFC 9221 DATAGRAM frames carry the tunnel's datagrams
// (src/transport/framing.ts), the first client-initiated bidirectional stream carries the control channel.
//
// Flow in:  uv_poll readable -> recvmmsg batch (UDP_GRO: a buffer holds many packets) -> per packet: look the
//           connection up by its Destination Connection ID (server: a valid Initial makes a new one once JS's
//           onAccept(source) agrees) -> ngtcp2_conn_read_pkt -> DATAGRAM payloads are copied into the shared
//           receive area (rxData, rxMeta: slot, offset, length per datagram) -> after the batch (or when the
//           area fills) ONE JS call onDatagrams(count); stream bytes, handshakes, closes, path changes and
//           writability are queued as events and delivered after the ngtcp2 call returned (never re-entered).
// Flow out: JS packs datagrams into the shared send area (txData packed, txMeta: slot, length) and calls
//           sendBatch(count) once per flush -> per-connection queue (bounded; `blocked[slot]` = 1 above the
//           high mark, onWritable(slot) below the low mark) -> ngtcp2_conn_writev_datagram per packet while
//           congestion control allows -> UDP GSO sends of up to 40 packets.
// Close:    closeConnection(slot, code, reason): CONNECTION_CLOSE with an application error code and reason
//           (the gateway's refusals and close messages), then a closing period of 3 PTO answering with the
//           same packet. A peer's close, an idle or handshake timeout, a TLS failure: onClose(slot, kind, code, reason).
// Roaming: the client's socket is unconnected and bound to the wildcard address, so after an address change its
//           packets leave from the new address; the server validates the new path (ngtcp2) and follows it
//           (onPath). An active client migration (ngtcp2_conn_initiate_immediate_migration to a new socket) was
//           tried: with ngtcp2 0.12 it ended in CONNECTION_ID_LIMIT_ERROR in 3 of 4 e2e runs, so it is not used.
// Malformed input (undecodable packets, unknown connection IDs, packets ngtcp2 refuses) is dropped and counted.

#include <napi.h>
#include <uv.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <dlfcn.h>
#include <unistd.h>

#include "tls.h"
#include "udp.h"

namespace quicgate {
namespace {

constexpr size_t kCidLength = 16;
constexpr size_t kMaxDatagram = 1500;
// Short header (1) + DCID (16) + packet number (up to 4) + AEAD tag (16) + DATAGRAM type and length (3), rounded up.
constexpr size_t kDatagramOverhead = 48;
constexpr size_t kQueueHigh = 512, kQueueLow = 128, kQueueMax = 2048;  // datagrams per connection
constexpr size_t kMaxSlots = 65536;
constexpr int kReadBatches = 8;  // recvmmsg batches per readable event before yielding to the loop

// Close kinds reported to JS.
enum CloseKind : int { kPeerApplication = 0, kPeerTransport = 1, kIdle = 2, kHandshakeTimeout = 3, kLocalError = 4 };
enum EventType : int { kHandshake, kStream, kPath, kWritable, kClose };

ngtcp2_tstamp Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<ngtcp2_tstamp>(ts.tv_sec) * NGTCP2_SECONDS + static_cast<ngtcp2_tstamp>(ts.tv_nsec);
}

struct Pending {
  uint16_t length;
  uint8_t data[kMaxDatagram];
};

struct StreamChunk {
  std::vector<uint8_t> data;
  uint64_t offset;
};

class Endpoint;

struct Conn {
  uint32_t slot = 0;
  Endpoint* endpoint = nullptr;
  ngtcp2_conn* conn = nullptr;
  ngtcp2_crypto_conn_ref ref{};
  gnutls_session_t tls = nullptr;
  std::shared_ptr<Credentials> cred;
  Address local, remote;
  std::vector<std::string> cids;
  int64_t stream = -1;
  std::deque<StreamChunk> chunks;  // control bytes kept until acknowledged (ngtcp2 references them)
  uint64_t streamWritten = 0, streamAcked = 0, streamEnd = 0;
  std::deque<Pending*> queue;
  bool blocked = false, handshakeDone = false, dirty = false, closing = false, silent = false;
  std::vector<uint8_t> closePacket;
  ngtcp2_tstamp closeDeadline = 0;
};

struct Event {
  EventType type;
  uint32_t slot;
  int kind;
  double code;
  std::string text;
};

Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err) {
  Napi::Error error = Napi::Error::New(env, what + ": " + std::strerror(err));
  error.Set("errno", Napi::Number::New(env, err));
  return error;
}

class Endpoint : public Napi::ObjectWrap<Endpoint> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "QuicEndpoint",
                       {
                           InstanceMethod<&Endpoint::Connect>("connect"),
                           InstanceMethod<&Endpoint::SendBatch>("sendBatch"),
                           InstanceMethod<&Endpoint::WriteStream>("writeStream"),
                           InstanceMethod<&Endpoint::CloseConnection>("closeConnection"),
                           InstanceMethod<&Endpoint::MaxDatagramBytes>("maxDatagramBytes"),
                           InstanceMethod<&Endpoint::UpdateCertificate>("updateCertificate"),
                           InstanceMethod<&Endpoint::Stats>("stats"),
                           InstanceMethod<&Endpoint::LocalAddress>("address"),
                           InstanceMethod<&Endpoint::Close>("close"),
                       });
  }

  // new QuicEndpoint(options, handlers): see src/transport/quic-native.ts for the typed surface.
  explicit Endpoint(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Endpoint>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
      Napi::TypeError::New(env, "QuicEndpoint(options, handlers)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Object h = info[1].As<Napi::Object>();
    server_ = o.Get("server").ToBoolean().Value();
    alpn_ = o.Get("alpn").ToString().Utf8Value();
    maxUdpPayload_ = static_cast<size_t>(o.Get("maxUdpPayload").ToNumber().Int64Value());
    handshakeTimeoutMs_ = static_cast<uint64_t>(o.Get("handshakeTimeoutMs").ToNumber().Int64Value());
    idleTimeoutMs_ = static_cast<uint64_t>(o.Get("idleTimeoutMs").ToNumber().Int64Value());
    if (alpn_.empty() || alpn_.size() > 255 || maxUdpPayload_ < 1200 || maxUdpPayload_ > 1472 || handshakeTimeoutMs_ == 0 || idleTimeoutMs_ == 0) {
      Napi::RangeError::New(env, "QuicEndpoint: alpn, maxUdpPayload (1200..1472), handshakeTimeoutMs, idleTimeoutMs").ThrowAsJavaScriptException();
      return;
    }
    if (!TakeArea(env, o, "rxData", napi_uint8_array, &rxRef_) || !TakeArea(env, o, "rxMeta", napi_uint32_array, &rxMetaRef_) ||
        !TakeArea(env, o, "txData", napi_uint8_array, &txRef_) || !TakeArea(env, o, "txMeta", napi_uint32_array, &txMetaRef_) ||
        !TakeArea(env, o, "blocked", napi_uint8_array, &blockedRef_)) {
      return;
    }
    rxData_ = o.Get("rxData").As<Napi::Uint8Array>().Data();
    rxCap_ = o.Get("rxData").As<Napi::Uint8Array>().ByteLength();
    rxMeta_ = o.Get("rxMeta").As<Napi::Uint32Array>().Data();
    rxMetaCap_ = o.Get("rxMeta").As<Napi::Uint32Array>().ElementLength() / 3;
    txData_ = o.Get("txData").As<Napi::Uint8Array>().Data();
    txCap_ = o.Get("txData").As<Napi::Uint8Array>().ByteLength();
    txMeta_ = o.Get("txMeta").As<Napi::Uint32Array>().Data();
    txMetaCap_ = o.Get("txMeta").As<Napi::Uint32Array>().ElementLength() / 2;
    blocked_ = o.Get("blocked").As<Napi::Uint8Array>().Data();
    slotCap_ = std::min(kMaxSlots, o.Get("blocked").As<Napi::Uint8Array>().ByteLength());
    if (rxCap_ < 2 * kMaxDatagram || rxMetaCap_ < 16 || slotCap_ == 0) {
      Napi::RangeError::New(env, "QuicEndpoint: receive area too small").ThrowAsJavaScriptException();
      return;
    }
    for (const char* name : {"onAccept", "onHandshake", "onStream", "onDatagrams", "onClose", "onWritable", "onPath"}) {
      if (!h.Get(name).IsFunction()) {
        Napi::TypeError::New(env, std::string("QuicEndpoint: handlers.") + name + " must be a function").ThrowAsJavaScriptException();
        return;
      }
    }
    onAccept_ = Napi::Persistent(h.Get("onAccept").As<Napi::Function>());
    onHandshake_ = Napi::Persistent(h.Get("onHandshake").As<Napi::Function>());
    onStream_ = Napi::Persistent(h.Get("onStream").As<Napi::Function>());
    onDatagrams_ = Napi::Persistent(h.Get("onDatagrams").As<Napi::Function>());
    onClose_ = Napi::Persistent(h.Get("onClose").As<Napi::Function>());
    onWritable_ = Napi::Persistent(h.Get("onWritable").As<Napi::Function>());
    onPath_ = Napi::Persistent(h.Get("onPath").As<Napi::Function>());
    slots_.assign(slotCap_, nullptr);
    for (size_t i = slotCap_; i > 0; i--) freeSlots_.push_back(static_cast<uint32_t>(i - 1));

    std::string error;
    Address bind;
    if (server_) {
      cred_ = ServerCredentials(o.Get("certPem").ToString().Utf8Value(), o.Get("keyPem").ToString().Utf8Value(), &error);
      if (!cred_) {
        Napi::Error::New(env, "QuicEndpoint: " + error).ThrowAsJavaScriptException();
        return;
      }
      std::string host = o.Get("host").ToString().Utf8Value();
      if (!ParseAddress(host, static_cast<int>(o.Get("port").ToNumber().Int32Value()), &bind)) {
        Napi::TypeError::New(env, "QuicEndpoint: host must be an IP address literal").ThrowAsJavaScriptException();
        return;
      }
      if (!OpenSocket(env, bind)) return;
    }
    if (napi_get_uv_event_loop(env, &loop_) != napi_ok || loop_ == nullptr) {
      Napi::Error::New(env, "QuicEndpoint: no event loop").ThrowAsJavaScriptException();
      return;
    }
    timer_ = new uv_timer_t;
    uv_timer_init(loop_, timer_);
    timer_->data = this;
    asyncContext_ = new Napi::AsyncContext(env, "QuicgateQuic", Value());
    if (server_ && !StartPolling(env)) return;
    Ref();  // not collectable while its handles point at it; close() drops this
    referenced_ = true;
  }

  ~Endpoint() override {
    Release();
    delete asyncContext_;
    for (Pending* p : pool_) delete p;
  }

 private:
  // ---- JS methods ----

  // connect(host, port, verifyHost, caPem | null, pins: Uint8Array[]) -> slot (client endpoints only)
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (server_ || fd_ >= 0 || info.Length() < 5 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsString() || !info[4].IsArray()) {
      Napi::TypeError::New(env, "connect(host, port, verifyHost, caPem, pins) once, on a client endpoint").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Address remote;
    if (!ParseAddress(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value(), &remote)) {
      Napi::TypeError::New(env, "connect: host must be an IP address literal").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    verify_.host = info[2].As<Napi::String>().Utf8Value();
    Napi::Array pins = info[4].As<Napi::Array>();
    for (uint32_t i = 0; i < pins.Length(); i++) {
      Napi::Value pin = pins.Get(i);
      if (!pin.IsTypedArray() || pin.As<Napi::Uint8Array>().ByteLength() != 32) {
        Napi::TypeError::New(env, "connect: every pin is 32 bytes").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      std::array<uint8_t, 32> p;
      std::memcpy(p.data(), pin.As<Napi::Uint8Array>().Data(), 32);
      verify_.pins.push_back(p);
    }
    std::string error;
    cred_ = ClientCredentials(info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : std::string(), &error);
    if (!cred_) {
      Napi::Error::New(env, "connect: " + error).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Address bind;
    ParseAddress(remote.storage.ss_family == AF_INET ? "0.0.0.0" : "::", 0, &bind);
    if (!OpenSocket(env, bind) || !StartPolling(env)) return env.Undefined();
    Conn* c = NewConn();
    if (c == nullptr) {
      Napi::Error::New(env, "connect: no connection slot").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    c->local = bound_;
    c->remote = remote;
    ngtcp2_cid dcid, scid;
    dcid.datalen = 18;
    scid.datalen = kCidLength;
    gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
    gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
    ngtcp2_settings settings;
    ngtcp2_transport_params params;
    Settings(&settings, &params);
    ngtcp2_path path = PathOf(c);
    ngtcp2_callbacks callbacks = Callbacks();
    int rv = ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &callbacks, &settings, &params, nullptr, c);
    if (rv == 0) c->tls = NewSession(false, *c->cred, alpn_, &c->ref, &verify_, &error);
    if (rv != 0 || c->tls == nullptr) {
      Destroy(c);
      Napi::Error::New(env, "connect: " + (rv != 0 ? std::string(ngtcp2_strerror(rv)) : error)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    WriteConn(c);
    Reschedule();
    return Napi::Number::New(env, c->slot);
  }

  // sendBatch(count): datagrams in the send area (txMeta: slot, length; txData packed); returns how many were taken.
  Napi::Value SendBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t count = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int64Value() : -1;
    if (count < 0 || static_cast<size_t>(count) > txMetaCap_) {
      Napi::RangeError::New(env, "sendBatch(count): count outside the send area").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t offset = 0, taken = 0;
    for (size_t i = 0; i < static_cast<size_t>(count); i++) {
      uint32_t slot = txMeta_[2 * i], length = txMeta_[2 * i + 1];
      if (offset + length > txCap_) break;
      const uint8_t* data = txData_ + offset;
      offset += length;
      Conn* c = slot < slotCap_ ? slots_[slot] : nullptr;
      if (c == nullptr || c->closing || length == 0 || length > kMaxDatagram || c->queue.size() >= kQueueMax) {
        stats_.txDatagramsDropped++;
        continue;
      }
      Pending* p = Take();
      p->length = static_cast<uint16_t>(length);
      std::memcpy(p->data, data, length);
      c->queue.push_back(p);
      if (!c->blocked && c->queue.size() >= kQueueHigh) {
        c->blocked = true;
        blocked_[slot] = 1;
      }
      MarkDirty(c);
      taken++;
    }
    WriteDirty();
    Reschedule();
    return Napi::Number::New(env, static_cast<double>(taken));
  }

  // writeStream(slot, bytes): appends to the control stream; false when the connection is gone.
  Napi::Value WriteStream(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Conn* c = SlotArg(info);
    if (c == nullptr || c->closing || info.Length() < 2 || !info[1].IsTypedArray()) return Napi::Boolean::New(env, false);
    Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
    if (bytes.ByteLength() == 0) return Napi::Boolean::New(env, true);
    c->chunks.push_back(StreamChunk{std::vector<uint8_t>(bytes.Data(), bytes.Data() + bytes.ByteLength()), c->streamEnd});
    c->streamEnd += bytes.ByteLength();
    if (c->stream < 0 && !server_ && c->handshakeDone) ngtcp2_conn_open_bidi_stream(c->conn, &c->stream, nullptr);
    WriteConn(c);
    Reschedule();
    return Napi::Boolean::New(env, true);
  }

  // closeConnection(slot, code, reason): CONNECTION_CLOSE with an application error; no onClose follows.
  Napi::Value CloseConnection(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Conn* c = SlotArg(info);
    if (c == nullptr || c->closing) return env.Undefined();
    uint64_t code = info.Length() > 1 && info[1].IsNumber() ? static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()) : 0;
    std::string reason = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : std::string();
    if (reason.size() > 1000) reason.resize(1000);
    WriteConn(c);  // what is queued (the close line on the stream) goes first
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    ngtcp2_connection_close_error_set_application_error(&ccerr, code, reinterpret_cast<const uint8_t*>(reason.data()), reason.size());
    StartClosing(c, ccerr, true);
    Reschedule();
    return env.Undefined();
  }

  // maxDatagramBytes(slot): the largest datagram one QUIC packet carries now (0: unknown slot).
  Napi::Value MaxDatagramBytes(const Napi::CallbackInfo& info) {
    Conn* c = SlotArg(info);
    double bytes = 0;
    if (c != nullptr) {
      size_t payload = std::min(maxUdpPayload_, ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn));
      bytes = static_cast<double>(payload > kDatagramOverhead ? payload - kDatagramOverhead : 0);
      const ngtcp2_transport_params* remote = ngtcp2_conn_get_remote_transport_params(c->conn);
      if (remote != nullptr && remote->max_datagram_frame_size > 0) bytes = std::min(bytes, static_cast<double>(remote->max_datagram_frame_size) - 3);
    }
    return Napi::Number::New(info.Env(), bytes);
  }

  // updateCertificate(certPem, keyPem): new handshakes use it; live connections keep theirs.
  Napi::Value UpdateCertificate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!server_ || info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
      Napi::TypeError::New(env, "updateCertificate(certPem, keyPem) on a server endpoint").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::string error;
    auto cred = ServerCredentials(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(), &error);
    if (!cred) {
      Napi::Error::New(env, "updateCertificate: " + error).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    cred_ = cred;
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object s = Napi::Object::New(env);
    s.Set("connections", Napi::Number::New(env, static_cast<double>(connections_)));
    s.Set("udpPacketsReceived", Napi::Number::New(env, static_cast<double>(stats_.udpPacketsReceived)));
    s.Set("udpReceiveCalls", Napi::Number::New(env, static_cast<double>(stats_.udpReceiveCalls)));
    s.Set("udpPacketsSent", Napi::Number::New(env, static_cast<double>(sender_.packets)));
    s.Set("udpSendCalls", Napi::Number::New(env, static_cast<double>(sender_.sends)));
    s.Set("udpSendDrops", Napi::Number::New(env, static_cast<double>(sender_.dropped)));
    s.Set("malformedPackets", Napi::Number::New(env, static_cast<double>(stats_.malformed)));
    s.Set("unknownConnectionPackets", Napi::Number::New(env, static_cast<double>(stats_.unknown)));
    s.Set("refusedConnections", Napi::Number::New(env, static_cast<double>(stats_.refused)));
    s.Set("rxDatagramsDropped", Napi::Number::New(env, static_cast<double>(stats_.rxDatagramsDropped)));
    s.Set("txDatagramsDropped", Napi::Number::New(env, static_cast<double>(stats_.txDatagramsDropped)));
    return s;
  }

  Napi::Value LocalAddress(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object a = Napi::Object::New(env);
    a.Set("address", Napi::String::New(env, bound_.Host()));
    int port = bound_.storage.ss_family == AF_INET ? ntohs(reinterpret_cast<const sockaddr_in*>(&bound_.storage)->sin_port)
                                                   : ntohs(reinterpret_cast<const sockaddr_in6*>(&bound_.storage)->sin6_port);
    a.Set("port", Napi::Number::New(env, port));
    return a;
  }

  // close(): every connection is dropped without a word (callers close theirs first), the socket closed.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  // ---- setup ----

  bool TakeArea(Napi::Env env, Napi::Object o, const char* name, napi_typedarray_type type, Napi::ObjectReference* ref) {
    Napi::Value v = o.Get(name);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
      Napi::TypeError::New(env, std::string("QuicEndpoint: options.") + name + " has the wrong type").ThrowAsJavaScriptException();
      return false;
    }
    *ref = Napi::Persistent(v.As<Napi::Object>());
    return true;
  }

  bool OpenSocket(Napi::Env env, const Address& bind) {
    int fd = OpenUdpSocket(bind, &bound_);
    if (fd < 0) {
      ErrnoError(env, "QuicEndpoint: UDP " + bind.ToString(), -fd).ThrowAsJavaScriptException();
      return false;
    }
    fd_ = fd;
    return true;
  }

  bool StartPolling(Napi::Env env) {
    poll_ = new uv_poll_t;
    int rc = uv_poll_init(loop_, poll_, fd_);
    if (rc == 0) rc = uv_poll_start(poll_, UV_READABLE, OnReadable);
    if (rc != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
      ErrnoError(env, "QuicEndpoint: uv_poll_start", -rc).ThrowAsJavaScriptException();
      return false;
    }
    poll_->data = this;
    return true;
  }

  void StopPolling() {
    if (poll_ == nullptr) return;
    poll_->data = nullptr;
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }

  void Release() {
    if (released_) return;
    released_ = true;
    for (Conn* c : slots_) {
      if (c != nullptr) {
        c->silent = true;
        Destroy(c);
      }
    }
    StopPolling();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (timer_ != nullptr) {
      timer_->data = nullptr;
      uv_timer_stop(timer_);
      uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
      timer_ = nullptr;
    }
    events_.clear();
    if (referenced_) {
      referenced_ = false;
      Unref();
    }
  }

  void Settings(ngtcp2_settings* s, ngtcp2_transport_params* tp) {
    ngtcp2_settings_default(s);
    s->initial_ts = Now();
    s->max_tx_udp_payload_size = maxUdpPayload_;
    // The configured packet size at once (a 1,500-byte underlay carries it), not 1,200 first: the session MTU
    // is derived from it at connect (docs/quic-route.md).
    s->no_tx_udp_payload_size_shaping = 1;
    s->cc_algo = NGTCP2_CC_ALGO_CUBIC;
    s->handshake_timeout = handshakeTimeoutMs_ * NGTCP2_MILLISECONDS;
    ngtcp2_transport_params_default(tp);
    tp->initial_max_data = 1 << 20;
    tp->initial_max_streams_bidi = server_ ? 1 : 0;  // the control stream, opened by the client
    tp->initial_max_streams_uni = 0;
    tp->initial_max_stream_data_bidi_local = tp->initial_max_stream_data_bidi_remote = 256 << 10;
    tp->max_idle_timeout = idleTimeoutMs_ * NGTCP2_MILLISECONDS;
    tp->max_datagram_frame_size = 65535;
  }

  ngtcp2_callbacks Callbacks() {
    ngtcp2_callbacks cb;
    std::memset(&cb, 0, sizeof cb);
    if (server_) {
      cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    } else {
      cb.client_initial = ngtcp2_crypto_client_initial_cb;
      cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
    }
    cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb.encrypt = ngtcp2_crypto_encrypt_cb;
    cb.decrypt = ngtcp2_crypto_decrypt_cb;
    cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb.update_key = ngtcp2_crypto_update_key_cb;
    cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb.rand = [](uint8_t* dest, size_t len, const ngtcp2_rand_ctx*) { gnutls_rnd(GNUTLS_RND_RANDOM, dest, len); };
    cb.get_new_connection_id = OnNewCid;
    cb.remove_connection_id = OnRemoveCid;
    cb.recv_datagram = OnDatagram;
    cb.recv_stream_data = OnStreamData;
    cb.acked_stream_data_offset = OnAcked;
    cb.handshake_completed = OnHandshakeCompleted;
    return cb;
  }

  Conn* NewConn() {
    if (freeSlots_.empty()) return nullptr;
    Conn* c = new Conn;
    c->slot = freeSlots_.back();
    freeSlots_.pop_back();
    c->endpoint = this;
    c->cred = cred_;
    c->ref.get_conn = [](ngtcp2_crypto_conn_ref* ref) { return static_cast<Conn*>(ref->user_data)->conn; };
    c->ref.user_data = c;
    slots_[c->slot] = c;
    blocked_[c->slot] = 0;
    connections_++;
    return c;
  }

  static ngtcp2_path PathOf(Conn* c) {
    return ngtcp2_path{{const_cast<sockaddr*>(c->local.sa()), c->local.length}, {const_cast<sockaddr*>(c->remote.sa()), c->remote.length}, nullptr};
  }

  // ---- ngtcp2 callbacks (inside ngtcp2 calls: no JS, only queued events) ----

  static int OnNewCid(ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen, void* user) {
    auto* c = static_cast<Conn*>(user);
    gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen);
    cid->datalen = cidlen;
    gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
    if (c->endpoint->server_) c->endpoint->MapCid(c, std::string(reinterpret_cast<char*>(cid->data), cidlen));
    return 0;
  }

  static int OnRemoveCid(ngtcp2_conn*, const ngtcp2_cid* cid, void* user) {
    auto* c = static_cast<Conn*>(user);
    std::string key(reinterpret_cast<const char*>(cid->data), cid->datalen);
    auto it = c->endpoint->byCid_.find(key);
    if (it != c->endpoint->byCid_.end() && it->second == c) c->endpoint->byCid_.erase(it);
    return 0;
  }

  static int OnDatagram(ngtcp2_conn*, uint32_t, const uint8_t* data, size_t len, void* user) {
    auto* c = static_cast<Conn*>(user);
    Endpoint* e = c->endpoint;
    if (len == 0 || e->rxUsed_ + len > e->rxCap_ || e->rxCount_ >= e->rxMetaCap_) {
      e->stats_.rxDatagramsDropped++;
      return 0;
    }
    std::memcpy(e->rxData_ + e->rxUsed_, data, len);
    e->rxMeta_[3 * e->rxCount_] = c->slot;
    e->rxMeta_[3 * e->rxCount_ + 1] = static_cast<uint32_t>(e->rxUsed_);
    e->rxMeta_[3 * e->rxCount_ + 2] = static_cast<uint32_t>(len);
    e->rxUsed_ += len;
    e->rxCount_++;
    return 0;
  }

  static int OnStreamData(ngtcp2_conn* conn, uint32_t, int64_t id, uint64_t, const uint8_t* data, size_t len, void* user, void*) {
    auto* c = static_cast<Conn*>(user);
    ngtcp2_conn_extend_max_stream_offset(conn, id, len);
    ngtcp2_conn_extend_max_offset(conn, len);
    if (c->stream < 0 && c->endpoint->server_ && (id & 3) == 0) c->stream = id;
    if (id != c->stream || len == 0) return 0;
    c->endpoint->events_.push_back(Event{kStream, c->slot, 0, 0, std::string(reinterpret_cast<const char*>(data), len)});
    return 0;
  }

  static int OnAcked(ngtcp2_conn*, int64_t id, uint64_t offset, uint64_t len, void* user, void*) {
    auto* c = static_cast<Conn*>(user);
    if (id != c->stream) return 0;
    c->streamAcked = std::max(c->streamAcked, offset + len);
    while (!c->chunks.empty() && c->chunks.front().offset + c->chunks.front().data.size() <= c->streamAcked) c->chunks.pop_front();
    return 0;
  }

  static int OnHandshakeCompleted(ngtcp2_conn*, void* user) {
    auto* c = static_cast<Conn*>(user);
    c->handshakeDone = true;
    c->endpoint->events_.push_back(Event{kHandshake, c->slot, 0, 0, c->remote.ToString()});
    return 0;
  }

  // ---- I/O ----

  void MapCid(Conn* c, std::string key) {
    byCid_[key] = c;
    c->cids.push_back(std::move(key));
  }

  static void OnReadable(uv_poll_t* handle, int status, int) {
    if (handle->data == nullptr) return;
    auto* self = static_cast<Endpoint*>(handle->data);
    Napi::HandleScope scope(self->Env());
    self->ReadAll(status);
  }

  static void OnTimer(uv_timer_t* handle) {
    if (handle->data == nullptr) return;
    auto* self = static_cast<Endpoint*>(handle->data);
    Napi::HandleScope scope(self->Env());
    self->Expire();
  }

  void ReadAll(int status) {
    if (status < 0) return;
    for (int batch = 0; batch < kReadBatches && !released_; batch++) {
      int got = receiver_.Receive(fd_);
      if (got <= 0) break;
      stats_.udpReceiveCalls++;
      for (int i = 0; i < got && !released_; i++) {
        const Received& r = receiver_.At(static_cast<size_t>(i));
        for (size_t off = 0; off < r.length && !released_; off += r.segment) {
          stats_.udpPacketsReceived++;
          HandlePacket(r.data + off, std::min(r.segment, r.length - off), r.from);
        }
      }
      if (released_) return;
      // JS first (the datagrams go to the TUN), then what ngtcp2 has to send (ACKs, JS's replies queued
      // meanwhile): a received payload never waits behind the send of its ACK (strace: sendmsg before the
      // TUN write on every idle ping, on both ends).
      Dispatch();
      if (released_) return;
      WriteDirty();
    }
    if (released_) return;
    Dispatch();
    if (released_) return;
    WriteDirty();
    Reschedule();
  }

  void HandlePacket(const uint8_t* pkt, size_t len, const Address& from) {
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, pkt, len, kCidLength);
    if (rv != 0) {
      stats_.malformed++;  // including versions we do not speak: no version negotiation is sent
      return;
    }
    // Room for this packet's datagrams: hand what waits to JS first (outside ngtcp2, so JS may call back in).
    if (rxCap_ - rxUsed_ < 2 * kMaxDatagram || rxMetaCap_ - rxCount_ < 8) Dispatch();
    if (released_) return;
    std::string key(reinterpret_cast<const char*>(vc.dcid), vc.dcidlen);
    Conn* c = nullptr;
    if (server_) {
      auto it = byCid_.find(key);
      if (it != byCid_.end()) c = it->second;
    } else {
      for (Conn* s : slots_) {
        if (s != nullptr) {
          c = s;
          break;
        }
      }
    }
    if (c == nullptr) {
      if (!server_) {
        stats_.unknown++;
        return;
      }
      c = Accept(pkt, len, from, key);
      if (c == nullptr) return;
    }
    if (c->closing) {
      // Closing period (RFC 9000 10.2.1): answer with the same CONNECTION_CLOSE.
      if (!c->closePacket.empty()) {
        std::memcpy(sender_.Slot(fd_, c->remote, c->closePacket.size()), c->closePacket.data(), c->closePacket.size());
        sender_.Commit(fd_, c->closePacket.size());
        sender_.Flush(fd_);
      }
      return;
    }
    Address remoteBefore = c->remote;
    ngtcp2_path path{{const_cast<sockaddr*>(c->local.sa()), c->local.length}, {const_cast<sockaddr*>(from.sa()), from.length}, nullptr};
    ngtcp2_pkt_info pi{};
    rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, pkt, len, Now());
    if (rv != 0) {
      ReadError(c, rv);
      return;
    }
    const ngtcp2_path* current = ngtcp2_conn_get_path(c->conn);
    if (current->remote.addrlen <= sizeof c->remote.storage) {
      std::memcpy(&c->remote.storage, current->remote.addr, current->remote.addrlen);
      c->remote.length = current->remote.addrlen;
    }
    if (!(c->remote == remoteBefore) && c->handshakeDone) events_.push_back(Event{kPath, c->slot, 0, 0, c->remote.ToString()});
    MarkDirty(c);
  }

  // A packet for no known connection on the server: a valid Initial from a source JS admits makes one.
  Conn* Accept(const uint8_t* pkt, size_t len, const Address& from, const std::string& dcid) {
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, pkt, len) != 0) {
      stats_.unknown++;
      return nullptr;
    }
    Conn* c = NewConn();
    if (c == nullptr) {
      stats_.refused++;
      return nullptr;
    }
    if (!AskAccept(from, c->slot)) {
      stats_.refused++;
      if (!released_) Destroy(c);
      return nullptr;
    }
    c->local = bound_;
    c->remote = from;
    ngtcp2_cid scid;
    scid.datalen = kCidLength;
    gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
    ngtcp2_settings settings;
    ngtcp2_transport_params params;
    Settings(&settings, &params);
    params.original_dcid = hd.dcid;
    ngtcp2_path path = PathOf(c);
    ngtcp2_callbacks callbacks = Callbacks();
    std::string error;
    int rv = ngtcp2_conn_server_new(&c->conn, &hd.scid, &scid, &path, hd.version, &callbacks, &settings, &params, nullptr, c);
    if (rv == 0) c->tls = NewSession(true, *c->cred, alpn_, &c->ref, nullptr, &error);
    if (rv != 0 || c->tls == nullptr) {
      events_.push_back(Event{kClose, c->slot, kLocalError, 0, rv != 0 ? ngtcp2_strerror(rv) : error});
      Destroy(c);
      return nullptr;
    }
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    MapCid(c, dcid);
    MapCid(c, std::string(reinterpret_cast<const char*>(scid.data), scid.datalen));
    return c;
  }

  bool AskAccept(const Address& from, uint32_t slot) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Function fn = onAccept_.Value();
    Napi::Value result = fn.MakeCallback(Value(), {Napi::String::New(env, from.Host()), Napi::Number::New(env, slot)}, *asyncContext_);
    if (env.IsExceptionPending()) {
      napi_fatal_exception(env, env.GetAndClearPendingException().Value());
      return false;
    }
    return !released_ && result.IsBoolean() && result.As<Napi::Boolean>().Value();
  }

  void ReadError(Conn* c, int rv) {
    if (rv == NGTCP2_ERR_DRAINING) {
      // The peer closed: its code and reason go to JS.
      ngtcp2_connection_close_error ccerr;
      ngtcp2_conn_get_connection_close_error(c->conn, &ccerr);
      int kind = ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION ? kPeerApplication
                 : ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT_IDLE_CLOSE ? kIdle
                                                                                               : kPeerTransport;
      std::string reason(reinterpret_cast<const char*>(ccerr.reason), ccerr.reasonlen);
      events_.push_back(Event{kClose, c->slot, kind, static_cast<double>(ccerr.error_code), reason});
      c->silent = true;
      Destroy(c);
      return;
    }
    if (rv == NGTCP2_ERR_DROP_CONN || rv == NGTCP2_ERR_RETRY) {
      events_.push_back(Event{kClose, c->slot, kLocalError, static_cast<double>(rv), ngtcp2_strerror(rv)});
      c->silent = true;
      Destroy(c);
      return;
    }
    if (rv == NGTCP2_ERR_CLOSING) return;
    // Our side refuses the connection (TLS: e.g. the certificate did not verify; or a protocol violation).
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    uint8_t alert = ngtcp2_conn_get_tls_alert(c->conn);
    if (rv == NGTCP2_ERR_CRYPTO) ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, nullptr, 0);
    else ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, nullptr, 0);
    std::string what = ngtcp2_strerror(rv);
    if (rv == NGTCP2_ERR_CRYPTO) what = "tls: alert " + std::to_string(alert);
    events_.push_back(Event{kClose, c->slot, kLocalError, static_cast<double>(rv == NGTCP2_ERR_CRYPTO ? 0x100 + alert : 0), what});
    StartClosing(c, ccerr, false);
  }

  // Sends CONNECTION_CLOSE and keeps the connection for its closing period (3 PTO) without telling JS again.
  void StartClosing(Conn* c, const ngtcp2_connection_close_error& ccerr, bool local) {
    (void)local;
    c->closing = true;
    c->silent = true;
    c->closePacket.resize(maxUdpPayload_);
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, c->closePacket.data(), c->closePacket.size(), &ccerr, Now());
    if (n > 0) {
      c->closePacket.resize(static_cast<size_t>(n));
      std::memcpy(sender_.Slot(fd_, c->remote, c->closePacket.size()), c->closePacket.data(), c->closePacket.size());
      sender_.Commit(fd_, c->closePacket.size());
      sender_.Flush(fd_);
    } else {
      c->closePacket.clear();
    }
    ngtcp2_duration pto = ngtcp2_conn_get_pto(c->conn);
    c->closeDeadline = Now() + std::max<ngtcp2_duration>(3 * pto, 50 * NGTCP2_MILLISECONDS);
    for (Pending* p : c->queue) pool_.push_back(p);
    c->queue.clear();
    if (c->blocked) blocked_[c->slot] = 0;
  }

  void MarkDirty(Conn* c) {
    if (c->dirty) return;
    c->dirty = true;
    dirty_.push_back(c->slot);
  }

  void WriteDirty() {
    writing_.clear();
    writing_.swap(dirty_);  // both keep their capacity: no allocation per batch
    for (uint32_t slot : writing_) {
      Conn* c = slots_[slot];
      if (c == nullptr) continue;
      c->dirty = false;
      if (!c->closing) WriteConn(c);
    }
  }

  // Writes what the connection may send now: control stream bytes, queued datagrams, ACKs and the handshake.
  void WriteConn(Conn* c) {
    if (c->closing || fd_ < 0) return;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    ngtcp2_tstamp ts = Now();
    size_t quantum = ngtcp2_conn_get_send_quantum(c->conn), written = 0;
    size_t limit = std::min(maxUdpPayload_, ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn));
    size_t datagramLimit = limit > kDatagramOverhead ? limit - kDatagramOverhead : 0;
    bool streamBlocked = false;
    for (;;) {
      uint8_t* dest = sender_.Slot(fd_, c->remote, maxUdpPayload_);
      ngtcp2_ssize n;
      if (c->stream < 0 && !server_ && c->handshakeDone && c->streamEnd > 0) ngtcp2_conn_open_bidi_stream(c->conn, &c->stream, nullptr);
      if (!streamBlocked && c->stream >= 0 && c->streamWritten < c->streamEnd) {
        StreamChunk* chunk = nullptr;
        for (auto& ch : c->chunks) {
          if (ch.offset + ch.data.size() > c->streamWritten) {
            chunk = &ch;
            break;
          }
        }
        if (chunk == nullptr) {
          c->streamWritten = c->streamEnd;
          continue;
        }
        size_t skip = static_cast<size_t>(c->streamWritten - chunk->offset);
        ngtcp2_vec v{chunk->data.data() + skip, chunk->data.size() - skip};
        ngtcp2_ssize taken = -1;
        n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, dest, maxUdpPayload_, &taken, NGTCP2_WRITE_STREAM_FLAG_NONE, c->stream, &v, 1, ts);
        if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND) {
          streamBlocked = true;
          continue;
        }
        if (taken > 0) c->streamWritten += static_cast<uint64_t>(taken);
      } else if (!c->queue.empty() && c->handshakeDone) {
        Pending* p = c->queue.front();
        if (p->length > datagramLimit) {
          c->queue.pop_front();
          pool_.push_back(p);
          stats_.txDatagramsDropped++;
          continue;
        }
        ngtcp2_vec v{p->data, p->length};
        int accepted = 0;
        n = ngtcp2_conn_writev_datagram(c->conn, &ps.path, &pi, dest, maxUdpPayload_, &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_NONE, 0, &v, 1, ts);
        if (accepted || n == NGTCP2_ERR_INVALID_ARGUMENT) {
          c->queue.pop_front();
          pool_.push_back(p);
          if (!accepted) {
            stats_.txDatagramsDropped++;
            continue;
          }
        }
      } else {
        n = ngtcp2_conn_write_pkt(c->conn, &ps.path, &pi, dest, maxUdpPayload_, ts);
      }
      if (n < 0) {
        ngtcp2_connection_close_error ccerr;
        ngtcp2_connection_close_error_default(&ccerr);
        ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, static_cast<int>(n), nullptr, 0);
        events_.push_back(Event{kClose, c->slot, kLocalError, static_cast<double>(n), ngtcp2_strerror(static_cast<int>(n))});
        StartClosing(c, ccerr, false);
        return;
      }
      if (n == 0) break;
      Address to;
      std::memcpy(&to.storage, ps.path.remote.addr, std::min<size_t>(ps.path.remote.addrlen, sizeof to.storage));
      to.length = ps.path.remote.addrlen;
      if (to == c->remote) {
        sender_.Commit(fd_, static_cast<size_t>(n));
      } else {
        // A probe on another path (migration): its own send.
        std::vector<uint8_t> probe(dest, dest + n);
        sender_.Flush(fd_);
        std::memcpy(sender_.Slot(fd_, to, probe.size()), probe.data(), probe.size());
        sender_.Commit(fd_, probe.size());
        sender_.Flush(fd_);
      }
      written += static_cast<size_t>(n);
      if (written >= quantum) break;
    }
    sender_.Flush(fd_);
    ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
    if (c->blocked && c->queue.size() <= kQueueLow) {
      c->blocked = false;
      blocked_[c->slot] = 0;
      events_.push_back(Event{kWritable, c->slot, 0, 0, std::string()});
    }
  }

  void Expire() {
    ngtcp2_tstamp now = Now();
    for (Conn* c : slots_) {
      if (c == nullptr) continue;
      if (c->closing) {
        if (now >= c->closeDeadline) Destroy(c);
        continue;
      }
      if (ngtcp2_conn_get_expiry(c->conn) > now) continue;
      int rv = ngtcp2_conn_handle_expiry(c->conn, now);
      if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        events_.push_back(Event{kClose, c->slot, rv == NGTCP2_ERR_IDLE_CLOSE ? kIdle : kHandshakeTimeout, 0,
                                rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout" : "handshake timeout"});
        c->silent = true;
        Destroy(c);
      } else if (rv != 0) {
        ngtcp2_connection_close_error ccerr;
        ngtcp2_connection_close_error_default(&ccerr);
        ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, nullptr, 0);
        events_.push_back(Event{kClose, c->slot, kLocalError, static_cast<double>(rv), ngtcp2_strerror(rv)});
        StartClosing(c, ccerr, false);
      } else {
        MarkDirty(c);
      }
    }
    WriteDirty();
    Dispatch();
    Reschedule();
  }

  void Reschedule() {
    if (timer_ == nullptr || released_) return;
    if (!events_.empty() || rxCount_ > 0) {
      uv_timer_start(timer_, OnTimer, 0, 0);
      return;
    }
    ngtcp2_tstamp next = UINT64_MAX, now = Now();
    for (Conn* c : slots_) {
      if (c == nullptr) continue;
      next = std::min(next, c->closing ? c->closeDeadline : ngtcp2_conn_get_expiry(c->conn));
    }
    if (next == UINT64_MAX) {
      uv_timer_stop(timer_);
      return;
    }
    uint64_t ms = next <= now ? 0 : (next - now + NGTCP2_MILLISECONDS - 1) / NGTCP2_MILLISECONDS;
    uv_timer_start(timer_, OnTimer, ms, 0);
  }

  // Delivers queued events and the receive area to JS: handshakes, stream bytes and writability first,
  // then the datagrams, then closes (a connection's last datagrams before its end).
  void Dispatch() {
    if (released_) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    std::vector<Event> events;
    events.swap(events_);
    for (const Event& ev : events) {
      if (released_) return;
      if (ev.type == kClose) continue;
      switch (ev.type) {
        case kHandshake:
          Call(onHandshake_, {Napi::Number::New(env, ev.slot), Napi::String::New(env, ev.text)});
          break;
        case kStream:
          Call(onStream_, {Napi::Number::New(env, ev.slot), Napi::Buffer<char>::Copy(env, ev.text.data(), ev.text.size())});
          break;
        case kPath:
          Call(onPath_, {Napi::Number::New(env, ev.slot), Napi::String::New(env, ev.text)});
          break;
        case kWritable:
          Call(onWritable_, {Napi::Number::New(env, ev.slot)});
          break;
        default:
          break;
      }
    }
    if (rxCount_ > 0 && !released_) {
      size_t count = rxCount_;
      Call(onDatagrams_, {Napi::Number::New(env, static_cast<double>(count))});
      rxCount_ = 0;
      rxUsed_ = 0;
    }
    for (const Event& ev : events) {
      if (released_) return;
      if (ev.type != kClose) continue;
      Call(onClose_, {Napi::Number::New(env, ev.slot), Napi::Number::New(env, ev.kind), Napi::Number::New(env, ev.code), Napi::String::New(env, ev.text)});
    }
    for (uint32_t slot : retiring_) freeSlots_.push_back(slot);
    retiring_.clear();
  }

  void Call(Napi::FunctionReference& ref, const std::initializer_list<napi_value>& args) {
    Napi::Env env = Env();
    Napi::Function fn = ref.Value();
    fn.MakeCallback(Value(), args, *asyncContext_);
    if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
  }

  Conn* SlotArg(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber()) return nullptr;
    int64_t slot = info[0].As<Napi::Number>().Int64Value();
    return slot >= 0 && static_cast<size_t>(slot) < slotCap_ ? slots_[static_cast<size_t>(slot)] : nullptr;
  }

  Pending* Take() {
    if (pool_.empty()) return new Pending;
    Pending* p = pool_.back();
    pool_.pop_back();
    return p;
  }

  // The slot returns to the free list only after the next Dispatch (its datagrams and close are delivered first).
  void Destroy(Conn* c) {
    for (const std::string& key : c->cids) {
      auto it = byCid_.find(key);
      if (it != byCid_.end() && it->second == c) byCid_.erase(it);
    }
    for (Pending* p : c->queue) pool_.push_back(p);
    if (c->conn != nullptr) ngtcp2_conn_del(c->conn);
    if (c->tls != nullptr) gnutls_deinit(c->tls);
    blocked_[c->slot] = 0;
    slots_[c->slot] = nullptr;
    if (released_) freeSlots_.push_back(c->slot);
    else retiring_.push_back(c->slot);
    connections_--;
    delete c;
  }

  struct Counters {
    uint64_t udpPacketsReceived = 0, udpReceiveCalls = 0, malformed = 0, unknown = 0, refused = 0;
    uint64_t rxDatagramsDropped = 0, txDatagramsDropped = 0;
  };

  bool server_ = false;
  bool released_ = false;
  bool referenced_ = false;
  std::string alpn_;
  size_t maxUdpPayload_ = 1452;
  uint64_t handshakeTimeoutMs_ = 10000, idleTimeoutMs_ = 30000;
  int fd_ = -1;
  Address bound_;
  uv_loop_t* loop_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  std::shared_ptr<Credentials> cred_;
  ClientVerify verify_;
  std::vector<Conn*> slots_;
  std::vector<uint32_t> freeSlots_, retiring_, dirty_, writing_;
  size_t slotCap_ = 0, connections_ = 0;
  std::unordered_map<std::string, Conn*> byCid_;
  std::vector<Event> events_;
  std::vector<Pending*> pool_;
  UdpReceiver receiver_;
  GsoSender sender_;
  Counters stats_;
  uint8_t* rxData_ = nullptr;
  size_t rxCap_ = 0, rxUsed_ = 0, rxCount_ = 0, rxMetaCap_ = 0;
  uint32_t* rxMeta_ = nullptr;
  uint8_t* txData_ = nullptr;
  size_t txCap_ = 0, txMetaCap_ = 0;
  uint32_t* txMeta_ = nullptr;
  uint8_t* blocked_ = nullptr;
  Napi::ObjectReference rxRef_, rxMetaRef_, txRef_, txMetaRef_, blockedRef_;
  Napi::FunctionReference onAccept_, onHandshake_, onStream_, onDatagrams_, onClose_, onWritable_, onPath_;
  Napi::AsyncContext* asyncContext_ = nullptr;
};

void PinLibrary() {
  static std::atomic<bool> pinned{false};
  if (pinned.exchange(true)) return;
  Dl_info self;
  // As the TUN addon: a worker's end must not unload code a pending uv_close callback lives in.
  if (dladdr(reinterpret_cast<void*>(&PinLibrary), &self) != 0 && self.dli_fname != nullptr) dlopen(self.dli_fname, RTLD_LAZY | RTLD_NODELETE);
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  PinLibrary();
  exports.Set("QuicEndpoint", Endpoint::Define(env));
  exports.Set("ngtcp2Version", Napi::String::New(env, ngtcp2_version(0)->version_str));
  exports.Set("gnutlsVersion", Napi::String::New(env, gnutls_check_version(nullptr)));
  return exports;
}

}  // namespace quicgate

static Napi::Object InitQuic(Napi::Env env, Napi::Object exports) { return quicgate::Init(env, exports); }

NODE_API_MODULE(quicgate_quic, InitQuic)
