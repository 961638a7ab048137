// quicgate TUN addon: the few syscalls Node cannot do fast on a TUN fd (libuv treats it as a FILE).
//
// Flow:
//   new Tun(name, vnet) open /dev/net/tun (O_NONBLOCK|O_CLOEXEC), TUNSETIFF IFF_TUN|IFF_NO_PI (+IFF_VNET_HDR when
//                       vnet: every read and write then carries a virtio_net_hdr) -> kernel name
//   new Tun(name, vnet, tso) also TUNSETOFFLOAD CSUM|TSO4|TSO6 (+USO4|USO6 where the kernel has them): reads
//                       then deliver TCP/UDP super-packets up to 64 KB (gso.h), with their GSO info in `meta`
//   startReading(...)   JS hands over ONE Buffer + Uint32Array (+ Uint16Array meta, kMetaPerPacket per slot:
//                       kind, gso_size, hdr_len, csum_start, csum_offset; all 0 for a plain packet) once;
//                       uv_poll watches the fd for readability
//   OnReadable          drain up to lengths.length packets into the Buffer at fixed stride, then one JS call
//                       onPackets(count); onPackets(-errno) once if reading fails for good (polling stopped)
//   write / writeBatch  write(2) per packet; returns errno (0 = ok) / number of packets accepted. With vnet,
//                       writeBatch coalesces TCP/UDP flows into GSO super-packets first (gro.h)
//   writeGso(...)       one super-packet: with vnet as ONE write (the kernel segments it where needed), else
//                       segmented here and written packet by packet
//   gsoSplit(...)       (module function) software segmentation into a caller's batch, for paths that need
//                       real packets
//   mallocStats() / mallocTrim()  (module functions, alloc.cc) the C allocator's figures and malloc_trim(0)
//   close()             stop + close the uv_poll handle BEFORE closing the fd; idempotent
//
// The library pins itself in memory (RTLD_NODELETE): a worker that ends with a device open unloads its addons
// before libuv runs the pending uv_close callback, which lives in this library.
//
// A JS exception thrown by onPackets is surfaced as an uncaught exception (napi_fatal_exception), like any
// other async callback; native state stays consistent and reading continues if the process survives.

#include <napi.h>
#include "gro.h"
#include "gso.h"
#include "alloc.h"
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

namespace {

// Entries of the read meta array per packet (see the file comment).
constexpr size_t kMetaPerPacket = 5;
// linux/if_tun.h; USO (kernel 6.2+) is missing from older userspace headers.
constexpr unsigned kTunFCsum = 0x01, kTunFTso4 = 0x02, kTunFTso6 = 0x04, kTunFUso4 = 0x20, kTunFUso6 = 0x40;

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err) {
  std::string message = std::string(syscall) + ": " + std::strerror(err);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

class Tun : public Napi::ObjectWrap<Tun> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tun",
                       {
                           InstanceAccessor<&Tun::GetName>("name"),
                           InstanceAccessor<&Tun::GetFd>("fd"),
                           InstanceAccessor<&Tun::GetVnet>("vnetHdr"),
                           InstanceAccessor<&Tun::GetTso>("tso"),
                           InstanceAccessor<&Tun::GetUso>("uso"),
                           InstanceMethod<&Tun::WriteGso>("writeGso"),
                           InstanceMethod<&Tun::GroStats>("groStats"),
                           InstanceMethod<&Tun::StartReading>("startReading"),
                           InstanceMethod<&Tun::StopReading>("stopReading"),
                           InstanceMethod<&Tun::Write>("write"),
                           InstanceMethod<&Tun::WriteBatch>("writeBatch"),
                           InstanceMethod<&Tun::Close>("close"),
                       });
  }

  explicit Tun(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tun>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) {
      Napi::TypeError::New(env, "Tun(name, vnetHdr?): name must be a string").ThrowAsJavaScriptException();
      return;
    }
    std::string requested = info[0].As<Napi::String>().Utf8Value();
    bool wantVnet = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    bool wantTso = wantVnet && info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    if (requested.size() >= IFNAMSIZ) {
      ErrnoError(env, "TUNSETIFF", ENAMETOOLONG).ThrowAsJavaScriptException();
      return;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      ErrnoError(env, "open /dev/net/tun", errno).ThrowAsJavaScriptException();
      return;
    }
    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (wantVnet ? IFF_VNET_HDR : 0);
    std::memcpy(ifr.ifr_name, requested.data(), requested.size());
    int headerSize = static_cast<int>(quicgate::kVnetHeaderLength);
    if (wantVnet && ioctl(fd, TUNSETIFF, &ifr) == 0 && ioctl(fd, TUNSETVNETHDRSZ, &headerSize) == 0) {
      vnet_ = true;
    } else if (wantVnet) {
      // A kernel without virtio headers on TUN: plain packets, no coalescing. A fresh fd, since TUNSETIFF
      // may have attached this one already.
      ::close(fd);
      fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) {
        ErrnoError(env, "open /dev/net/tun", errno).ThrowAsJavaScriptException();
        return;
      }
      ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    }
    if (!vnet_ && ioctl(fd, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      ::close(fd);
      ErrnoError(env, "ioctl TUNSETIFF", err).ThrowAsJavaScriptException();
      return;
    }
    if (vnet_ && wantTso) {
      // USO where the kernel has it (6.2+), else TCP only; a kernel that refuses both keeps plain reads.
      unsigned long withUso = kTunFCsum | kTunFTso4 | kTunFTso6 | kTunFUso4 | kTunFUso6;
      unsigned long tcpOnly = kTunFCsum | kTunFTso4 | kTunFTso6;
      if (ioctl(fd, TUNSETOFFLOAD, withUso) == 0) {
        tso_ = uso_ = true;
      } else if (ioctl(fd, TUNSETOFFLOAD, tcpOnly) == 0) {
        tso_ = true;
      }
    }
    fd_ = fd;
    name_ = std::string(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
    napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
  }

  ~Tun() override {
    Release();
    delete asyncContext_;
  }

 private:
  // The environment is going away (process exit, worker end) while the device is open: drop the handle and
  // fd without touching JS references, which the environment frees itself.
  static void OnEnvCleanup(void* arg) {
    auto* self = static_cast<Tun*>(arg);
    self->env_tearing_down_ = true;
    self->Release();
  }

  static void OnReadable(uv_poll_t* handle, int status, int events) {
    if (handle->data != nullptr) static_cast<Tun*>(handle->data)->DrainAndDeliver(handle, status);
  }

  Napi::Value GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value GetVnet(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), vnet_); }
  Napi::Value GetTso(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), tso_); }
  Napi::Value GetUso(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), uso_); }

  // groStats(): { superPackets, coalescedPackets, tcp, udp } of the write-side coalescing.
  Napi::Value GroStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object stats = Napi::Object::New(env);
    stats.Set("superPackets", Napi::Number::New(env, static_cast<double>(coalescer_.superPackets)));
    stats.Set("coalescedPackets", Napi::Number::New(env, static_cast<double>(coalescer_.coalescedPackets)));
    stats.Set("tcp", Napi::Boolean::New(env, vnet_ && coalescer_.tcpEnabled));
    stats.Set("udp", Napi::Boolean::New(env, vnet_ && coalescer_.udpEnabled));
    stats.Set("superPacketsRead", Napi::Number::New(env, static_cast<double>(superPacketsRead_)));
    stats.Set("badSuperPacketsRead", Napi::Number::New(env, static_cast<double>(badSuperPacketsRead_)));
    stats.Set("superPacketsWritten", Napi::Number::New(env, static_cast<double>(superPacketsWritten_)));
    return stats;
  }

  // startReading(data: Uint8Array, lengths: Uint32Array, stride: number, onPackets: (count) => void,
  //              meta?: Uint16Array of kMetaPerPacket * lengths.length: needed for super-packets (tso)
  Napi::Value StartReading(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) {
      ErrnoError(env, "startReading", EBADF).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (poll_ != nullptr) {
      Napi::Error::New(env, "startReading: already reading").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber() ||
        !info[3].IsFunction()) {
      Napi::TypeError::New(env, "startReading(data, lengths, stride, onPackets): bad arguments")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::TypedArray dataArray = info[0].As<Napi::TypedArray>();
    Napi::TypedArray lengthsArray = info[1].As<Napi::TypedArray>();
    if (dataArray.TypedArrayType() != napi_uint8_array || lengthsArray.TypedArrayType() != napi_uint32_array) {
      Napi::TypeError::New(env, "startReading: data must be a Uint8Array and lengths a Uint32Array")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
    Napi::Uint32Array lengths = info[1].As<Napi::Uint32Array>();
    int64_t stride = info[2].As<Napi::Number>().Int64Value();
    size_t maxBatch = lengths.ElementLength();
    if (stride <= 0 || maxBatch == 0 || data.ByteLength() < static_cast<size_t>(stride) * maxBatch) {
      Napi::RangeError::New(env, "startReading: need stride > 0, lengths.length > 0, data >= stride * lengths.length")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }

    uint16_t* meta = nullptr;
    if (info.Length() > 4 && !info[4].IsUndefined()) {
      if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array ||
          info[4].As<Napi::Uint16Array>().ElementLength() < kMetaPerPacket * maxBatch) {
        Napi::TypeError::New(env, "startReading: meta must be a Uint16Array of 5 * lengths.length")
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
      meta = info[4].As<Napi::Uint16Array>().Data();
    }

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      Napi::Error::New(env, "startReading: no event loop").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto* poll = new uv_poll_t;
    int rc = uv_poll_init(loop, poll, fd_);
    if (rc == 0) rc = uv_poll_start(poll, UV_READABLE, OnReadable);
    if (rc != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(poll), OnPollClosed);
      ErrnoError(env, "uv_poll_start", -rc).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    poll->data = this;
    poll_ = poll;

    // References keep the buffers (whose memory we write into) and the callback alive while reading.
    dataRef_ = Napi::Persistent(info[0].As<Napi::Object>());
    lengthsRef_ = Napi::Persistent(info[1].As<Napi::Object>());
    if (meta != nullptr) metaRef_ = Napi::Persistent(info[4].As<Napi::Object>());
    meta_ = meta;
    onPackets_ = Napi::Persistent(info[3].As<Napi::Function>());
    data_ = data.Data();
    lengths_ = lengths.Data();
    stride_ = static_cast<size_t>(stride);
    maxBatch_ = maxBatch;
    if (asyncContext_ == nullptr) asyncContext_ = new Napi::AsyncContext(env, "QuicgateTunRead", Value());
    Ref();  // not collectable while the poll handle points at us
    return env.Undefined();
  }

  Napi::Value StopReading(const Napi::CallbackInfo& info) {
    StopPolling();
    return info.Env().Undefined();
  }

  // write(data: Uint8Array, offset: number, length: number): errno (0 = written)
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint8_t* packet = nullptr;
    size_t length = 0;
    if (!PacketArgs(info, 0, "write(data: Uint8Array, offset: number, length: number)", "write", &packet, &length)) {
      return env.Undefined();
    }
    return Napi::Number::New(env, WriteOne(packet, length));
  }

  // writeBatch(data: Uint8Array, lengths: Uint32Array, stride: number, count: number, status?: Uint8Array):
  // packets accepted; status[i] = 1 if packet i was accepted, else 0. Refused packets are skipped (they are
  // drops); the loop stays in C to save one JS->C crossing per packet. With vnet the packets may be modified
  // in place (coalescing): data must be the caller's staging buffer.
  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint8_t* base = nullptr;
    size_t byteLength = 0;
    if (!Uint8Arg(info, 0, &base, &byteLength) || info.Length() < 4 || !info[1].IsTypedArray() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array || !info[2].IsNumber() ||
        !info[3].IsNumber()) {
      Napi::TypeError::New(env, "writeBatch(data: Uint8Array, lengths: Uint32Array, stride: number, count: number)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint32Array lengths = info[1].As<Napi::Uint32Array>();
    int64_t stride = info[2].As<Napi::Number>().Int64Value();
    int64_t count = info[3].As<Napi::Number>().Int64Value();
    if (stride <= 0 || count < 0 || static_cast<uint64_t>(count) > lengths.ElementLength()) {
      Napi::RangeError::New(env, "writeBatch: bad stride or count").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint8_t* status = nullptr;
    if (info.Length() > 4 && !info[4].IsUndefined()) {
      const uint8_t* statusBase = nullptr;
      size_t statusLength = 0;
      if (!Uint8Arg(info, 4, &statusBase, &statusLength) || statusLength < static_cast<size_t>(count)) {
        Napi::TypeError::New(env, "writeBatch: status must be a Uint8Array of at least count bytes")
            .ThrowAsJavaScriptException();
        return env.Undefined();
      }
      status = const_cast<uint8_t*>(statusBase);
    }
    for (int64_t i = 0; i < count; i++) {
      uint32_t length = lengths[static_cast<size_t>(i)];
      if (length == 0 || length > static_cast<uint64_t>(stride) ||
          static_cast<uint64_t>(i * stride) + length > byteLength) {
        Napi::RangeError::New(env, "writeBatch: a length is 0, above stride or outside data").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    uint32_t accepted = 0;
    if (vnet_ && fd_ >= 0) {
      accepted = coalescer_.WriteBatch(const_cast<uint8_t*>(base), lengths.Data(), static_cast<size_t>(stride),
                                       static_cast<size_t>(count), status, &Tun::Writev, this);
    } else {
      for (int64_t i = 0; i < count; i++) {
        bool ok = WriteOne(base + i * stride, lengths[static_cast<size_t>(i)]) == 0;
        if (ok) accepted++;
        if (status != nullptr) status[i] = ok ? 1 : 0;
      }
    }
    return Napi::Number::New(env, accepted);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  static bool Uint8Arg(const Napi::CallbackInfo& info, size_t index, const uint8_t** base, size_t* byteLength) {
    if (info.Length() <= index || !info[index].IsTypedArray()) return false;
    if (info[index].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return false;
    Napi::Uint8Array array = info[index].As<Napi::Uint8Array>();
    *base = array.Data();
    *byteLength = array.ByteLength();
    return true;
  }

  // (data: Uint8Array, offset, length, ...`extraNumbers` more numbers): the packet data[offset, offset + length).
  // False after throwing (TypeError `usage`, or RangeError when the slice is empty or outside data).
  static bool PacketArgs(const Napi::CallbackInfo& info, size_t extraNumbers, const char* usage, const char* name,
                         const uint8_t** packet, size_t* length) {
    Napi::Env env = info.Env();
    const uint8_t* base = nullptr;
    size_t byteLength = 0;
    bool ok = Uint8Arg(info, 0, &base, &byteLength) && info.Length() >= 3 + extraNumbers;
    for (size_t i = 1; ok && i < 3 + extraNumbers; i++) ok = info[i].IsNumber();
    if (!ok) {
      Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
      return false;
    }
    int64_t offset = info[1].As<Napi::Number>().Int64Value();
    int64_t count = info[2].As<Napi::Number>().Int64Value();
    if (offset < 0 || count <= 0 || static_cast<uint64_t>(offset + count) > byteLength) {
      Napi::RangeError::New(env, std::string(name) + ": offset/length outside data").ThrowAsJavaScriptException();
      return false;
    }
    *packet = base + offset;
    *length = static_cast<size_t>(count);
    return true;
  }

  int WriteOne(const uint8_t* packet, size_t length) {
    if (fd_ < 0) return EBADF;
    if (vnet_) {
      static const uint8_t kPlainHeader[quicgate::kVnetHeaderLength] = {};
      struct iovec iov[2] = {{const_cast<uint8_t*>(kPlainHeader), sizeof kPlainHeader},
                             {const_cast<uint8_t*>(packet), length}};
      return Writev(this, iov, 2);
    }
    for (;;) {
      ssize_t n = ::write(fd_, packet, length);
      if (n >= 0) return 0;
      if (errno != EINTR) return errno;
    }
  }

  static int Writev(void* self, const struct iovec* iov, int count) {
    int fd = static_cast<Tun*>(self)->fd_;
    if (fd < 0) return EBADF;
    for (;;) {
      ssize_t n = ::writev(fd, iov, count);
      if (n >= 0) return 0;
      if (errno != EINTR) return errno;
    }
  }

  // Reads one packet into `slot`; with vnet the header goes to a scratch area and a partial checksum of a plain
  // packet is completed. A super-packet (tso) is validated (gso.h) and its GSO info stored in `meta`; one that
  // is malformed, or arrives without a meta array to describe it, is skipped. Returns bytes, 0 for a skipped
  // packet, -1 with errno set.
  ssize_t ReadOne(uint8_t* slot, size_t capacity, uint16_t* meta) {
    if (!vnet_) return ::read(fd_, slot, capacity);
    quicgate::VnetHeader header;
    struct iovec iov[2] = {{&header, sizeof header}, {slot, capacity}};
    ssize_t n = ::readv(fd_, iov, 2);
    if (n < 0) return n;
    if (n < static_cast<ssize_t>(sizeof header)) return 0;
    n -= static_cast<ssize_t>(sizeof header);
    if (meta != nullptr) std::memset(meta, 0, kMetaPerPacket * sizeof *meta);
    if (header.gsoType != 0) {
      uint8_t kind = quicgate::GsoKindFromVirtio(header.gsoType, slot, static_cast<size_t>(n));
      quicgate::GsoInfo gso;
      if (meta == nullptr || kind == quicgate::kGsoKindNone ||
          !quicgate::ParseGso(slot, static_cast<size_t>(n), kind, header.gsoSize, &gso)) {
        badSuperPacketsRead_++;
        return 0;
      }
      superPacketsRead_++;
      meta[0] = kind;
      meta[1] = gso.gsoSize;
      meta[2] = gso.hdrLen;
      meta[3] = gso.csumStart;
      meta[4] = gso.csumOffset;
      return n;
    }
    if ((header.flags & 1) != 0) quicgate::CompleteChecksum(slot, static_cast<size_t>(n), header.csumStart, header.csumOffset);
    return n;
  }

  // writeGso(data: Uint8Array, offset, length, kind, gsoSize): errno (0 = written; EINVAL: not a well-formed
  // super-packet of that kind). Segmented here when the device has no virtio headers or the kernel refused
  // that kind of super-packet before.
  Napi::Value WriteGso(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint8_t* packet = nullptr;
    size_t length = 0;
    if (!PacketArgs(info, 2, "writeGso(data: Uint8Array, offset, length, kind, gsoSize)", "writeGso", &packet, &length)) {
      return env.Undefined();
    }
    int64_t kind = info[3].As<Napi::Number>().Int64Value();
    int64_t gsoSize = info[4].As<Napi::Number>().Int64Value();
    quicgate::GsoInfo gso;
    if (kind < 0 || kind > 0xff || gsoSize <= 0 || gsoSize > 0xffff ||
        !quicgate::ParseGso(packet, length, static_cast<uint8_t>(kind),
                            static_cast<uint32_t>(gsoSize), &gso)) {
      return Napi::Number::New(env, EINVAL);
    }
    if (fd_ < 0) return Napi::Number::New(env, EBADF);
    bool whole = vnet_ && (gso.tcp ? coalescer_.tcpEnabled : coalescer_.udpEnabled);
    if (whole) {
      uint8_t headers[40 + 60];
      quicgate::PrepareGsoHeaders(packet, gso, headers);
      quicgate::VnetHeader header = {1, quicgate::VirtioGsoType(gso), gso.hdrLen, gso.gsoSize, gso.csumStart,
                                     gso.csumOffset};
      struct iovec iov[3] = {{&header, sizeof header},
                             {headers, gso.hdrLen},
                             {const_cast<uint8_t*>(packet) + gso.hdrLen, length - gso.hdrLen}};
      int rc = Writev(this, iov, 3);
      if (rc == 0) {
        superPacketsWritten_++;
        return Napi::Number::New(env, 0);
      }
      if (rc != EINVAL) return Napi::Number::New(env, rc);
      // A kernel without that offload: segment from now on, as the coalescer does.
      if (gso.tcp) coalescer_.tcpEnabled = false;
      else coalescer_.udpEnabled = false;
    }
    size_t stride = static_cast<size_t>(gso.hdrLen) + gso.gsoSize;
    splitScratch_.resize(stride * gso.segments);
    splitLengths_.resize(gso.segments);
    int count = quicgate::SplitGso(packet, length, gso, splitScratch_.data(), stride,
                                   splitLengths_.data(), gso.segments);
    int last = 0;
    for (int i = 0; i < count; i++) {
      int rc = WriteOne(splitScratch_.data() + static_cast<size_t>(i) * stride, splitLengths_[static_cast<size_t>(i)]);
      if (rc != 0) last = rc;
    }
    return Napi::Number::New(env, last);
  }

  void DrainAndDeliver(uv_poll_t* handle, int status) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (status < 0) {
      StopPolling();
      Deliver(status);  // libuv status is -errno on Unix
      return;
    }
    size_t count = 0;
    int readError = 0;
    while (count < maxBatch_) {
      ssize_t n = ReadOne(data_ + count * stride_, stride_, meta_ == nullptr ? nullptr : meta_ + count * kMetaPerPacket);
      if (n > 0) {
        lengths_[count++] = static_cast<uint32_t>(n);
        continue;
      }
      if (n == 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) readError = errno;
      break;
    }
    if (count > 0) Deliver(static_cast<int32_t>(count));
    // The handler may have stopped (or restarted) reading; only report for the poll that is still ours.
    if (readError != 0 && poll_ == handle) {
      StopPolling();
      Deliver(-readError);
    }
  }

  void Deliver(int32_t value) {
    if (onPackets_.IsEmpty()) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Function onPackets = onPackets_.Value();  // a local handle survives a Reset() inside the call
    onPackets.MakeCallback(Value(), {Napi::Number::New(env, value)}, *asyncContext_);
    if (env.IsExceptionPending()) {
      Napi::Error error = env.GetAndClearPendingException();
      napi_fatal_exception(env, error.Value());
    }
  }

  static void OnPollClosed(uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); }

  void StopPolling() {
    if (poll_ == nullptr) return;
    uv_poll_t* poll = poll_;
    poll_ = nullptr;
    poll->data = nullptr;
    uv_poll_stop(poll);
    uv_close(reinterpret_cast<uv_handle_t*>(poll), OnPollClosed);
    data_ = nullptr;
    lengths_ = nullptr;
    meta_ = nullptr;
    if (!env_tearing_down_) {
      dataRef_.Reset();
      lengthsRef_.Reset();
      metaRef_.Reset();
      // Keep onPackets_ until the next start: Deliver(-errno) right after StopPolling still needs it.
      Unref();
    }
  }

  // Stop polling first, then close the fd (libuv must not watch a closed fd).
  void Release() {
    StopPolling();
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
      if (!env_tearing_down_) napi_remove_env_cleanup_hook(Env(), OnEnvCleanup, this);
    }
    if (!env_tearing_down_ && !onPackets_.IsEmpty() && poll_ == nullptr) {
      // Safe even inside Deliver: Deliver holds its own local handle to the function.
      onPackets_.Reset();
    }
  }

  int fd_ = -1;
  std::string name_;
  uv_poll_t* poll_ = nullptr;
  uint8_t* data_ = nullptr;
  uint32_t* lengths_ = nullptr;
  size_t stride_ = 0;
  size_t maxBatch_ = 0;
  bool env_tearing_down_ = false;
  bool vnet_ = false;
  bool tso_ = false;
  bool uso_ = false;
  uint16_t* meta_ = nullptr;
  uint64_t superPacketsRead_ = 0;
  uint64_t badSuperPacketsRead_ = 0;
  uint64_t superPacketsWritten_ = 0;
  std::vector<uint8_t> splitScratch_;
  std::vector<uint32_t> splitLengths_;
  quicgate::Coalescer coalescer_;
  Napi::ObjectReference dataRef_;
  Napi::ObjectReference lengthsRef_;
  Napi::ObjectReference metaRef_;
  Napi::FunctionReference onPackets_;
  Napi::AsyncContext* asyncContext_ = nullptr;
};

void PinLibrary() {
  static std::atomic<bool> pinned{false};  // workers may load the addon concurrently
  if (pinned.exchange(true)) return;
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&PinLibrary), &self) != 0 && self.dli_fname != nullptr) {
    dlopen(self.dli_fname, RTLD_LAZY | RTLD_NODELETE);  // the handle is deliberately never closed
  }
}

// gsoSplit(src: Uint8Array, offset, length, kind, gsoSize, out: Uint8Array, stride, lengths: Uint32Array):
// segments written to out + i * stride (lengths[i]); -1 when src is not a well-formed super-packet of that kind,
// -2 when its segments do not fit out (stride too small or more than lengths.length).
Napi::Value GsoSplit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 8 || !info[0].IsTypedArray() || !info[5].IsTypedArray() || !info[7].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      info[5].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      info[7].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    Napi::TypeError::New(env, "gsoSplit(src: Uint8Array, offset, length, kind, gsoSize, out: Uint8Array, stride, lengths: Uint32Array)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (size_t i : {1, 2, 3, 4, 6}) {
    if (!info[i].IsNumber()) {
      Napi::TypeError::New(env, "gsoSplit: offset, length, kind, gsoSize and stride must be numbers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  Napi::Uint8Array src = info[0].As<Napi::Uint8Array>();
  Napi::Uint8Array out = info[5].As<Napi::Uint8Array>();
  Napi::Uint32Array lengths = info[7].As<Napi::Uint32Array>();
  int64_t offset = info[1].As<Napi::Number>().Int64Value();
  int64_t length = info[2].As<Napi::Number>().Int64Value();
  int64_t kind = info[3].As<Napi::Number>().Int64Value();
  int64_t gsoSize = info[4].As<Napi::Number>().Int64Value();
  int64_t stride = info[6].As<Napi::Number>().Int64Value();
  if (offset < 0 || length <= 0 || static_cast<uint64_t>(offset + length) > src.ByteLength() || stride <= 0) {
    Napi::RangeError::New(env, "gsoSplit: offset/length outside src, or stride <= 0").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  quicgate::GsoInfo gso;
  if (kind < 0 || kind > 0xff || gsoSize <= 0 || gsoSize > 0xffff ||
      !quicgate::ParseGso(src.Data() + offset, static_cast<size_t>(length), static_cast<uint8_t>(kind),
                          static_cast<uint32_t>(gsoSize), &gso)) {
    return Napi::Number::New(env, -1);
  }
  size_t slots = std::min(lengths.ElementLength(), out.ByteLength() / static_cast<size_t>(stride));
  int count = quicgate::SplitGso(src.Data() + offset, static_cast<size_t>(length), gso, out.Data(),
                                 static_cast<size_t>(stride), lengths.Data(), slots);
  return Napi::Number::New(env, count < 0 ? -2 : count);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  PinLibrary();
  exports.Set("Tun", Tun::Define(env));
  exports.Set("gsoSplit", Napi::Function::New(env, GsoSplit, "gsoSplit"));
  quicgate::RegisterMalloc(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(quicgate_tun, Init)
