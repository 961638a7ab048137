#include "udp.h"

#include <arpa/inet.h>
#include <netinet/udp.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace quicgate {

namespace {
constexpr size_t kMaxPacket = 1500;
}

bool Address::operator==(const Address& other) const {
  return length == other.length && std::memcmp(&storage, &other.storage, length) == 0;
}

std::string Address::Host() const {
  char text[INET6_ADDRSTRLEN] = {0};
  if (storage.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, text, sizeof text);
    return text;
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
  if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
    inet_ntop(AF_INET, reinterpret_cast<const uint8_t*>(&in6->sin6_addr) + 12, text, sizeof text);
    return text;
  }
  inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
  return text;
}

std::string Address::ToString() const {
  int port = storage.ss_family == AF_INET ? ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port)
                                          : ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  std::string host = Host();
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool ParseAddress(const std::string& host, int port, Address* out) {
  *out = Address{};
  auto* in4 = reinterpret_cast<sockaddr_in*>(&out->storage);
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    out->length = sizeof(sockaddr_in);
    return true;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
  std::string bare = host.size() > 2 && host.front() == '[' && host.back() == ']' ? host.substr(1, host.size() - 2) : host;
  if (inet_pton(AF_INET6, bare.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    out->length = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

int OpenUdpSocket(const Address& bind, Address* bound) {
  int fd = socket(bind.storage.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int buffer = 4 << 20, one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);  // best effort: older kernels deliver packets one by one
  if (bind.storage.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (::bind(fd, bind.sa(), bind.length) != 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  bound->length = sizeof bound->storage;
  getsockname(fd, bound->sa(), &bound->length);
  return fd;
}

UdpReceiver::UdpReceiver() : buffers_(kRxBatch * kRxBuffer) {}

int UdpReceiver::Receive(int fd) {
  mmsghdr msgs[kRxBatch];
  iovec iov[kRxBatch];
  char control[kRxBatch][CMSG_SPACE(sizeof(int))];
  for (size_t i = 0; i < kRxBatch; i++) {
    iov[i].iov_base = buffers_.data() + i * kRxBuffer;
    iov[i].iov_len = kRxBuffer;
    std::memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &received_[i].from.storage;
    msgs[i].msg_hdr.msg_namelen = sizeof received_[i].from.storage;
    msgs[i].msg_hdr.msg_control = control[i];
    msgs[i].msg_hdr.msg_controllen = sizeof control[i];
  }
  int got;
  do {
    got = recvmmsg(fd, msgs, kRxBatch, 0, nullptr);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  for (int i = 0; i < got; i++) {
    Received& r = received_[i];
    r.data = buffers_.data() + static_cast<size_t>(i) * kRxBuffer;
    r.length = msgs[i].msg_len;
    r.segment = r.length;
    r.from.length = msgs[i].msg_hdr.msg_namelen;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != nullptr; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int segment;
        std::memcpy(&segment, CMSG_DATA(c), sizeof segment);
        if (segment > 0) r.segment = static_cast<size_t>(segment);
      }
    }
  }
  return got;
}

GsoSender::GsoSender() : buffer_(kGsoMax * kMaxPacket) {}

uint8_t* GsoSender::Slot(int fd, const Address& to, size_t max) {
  if (count_ > 0 && (count_ == kGsoMax || !(to == to_) || used_ + max > buffer_.size())) Flush(fd);
  if (count_ == 0) to_ = to;
  return buffer_.data() + used_;
}

void GsoSender::Commit(int fd, size_t length) {
  if (count_ > 0 && length > segment_) {
    // Longer than the batch's segment size: it cannot join; send the batch, then start anew with it.
    std::vector<uint8_t> packet(buffer_.data() + used_, buffer_.data() + used_ + length);
    Flush(fd);
    std::memcpy(buffer_.data(), packet.data(), length);
  }
  if (count_ == 0) segment_ = length;
  used_ += length;
  count_++;
  if (length < segment_) Flush(fd);  // a shorter packet ends a GSO batch
}

void GsoSender::Flush(int fd) {
  if (count_ == 0) return;
  if (count_ == 1 || !gsoBroken_) {
    SendOne(fd, buffer_.data(), used_, count_ > 1 ? segment_ : 0);
  } else {
    for (size_t off = 0; off < used_; off += segment_) SendOne(fd, buffer_.data() + off, std::min(segment_, used_ - off), 0);
  }
  packets += count_;
  used_ = segment_ = count_ = 0;
}

void GsoSender::SendOne(int fd, const uint8_t* data, size_t length, size_t segment) {
  iovec iov{const_cast<uint8_t*>(data), length};
  char control[CMSG_SPACE(sizeof(uint16_t))];
  msghdr msg{};
  msg.msg_name = const_cast<sockaddr*>(to_.sa());
  msg.msg_namelen = to_.length;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (segment > 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t size = static_cast<uint16_t>(segment);
    std::memcpy(CMSG_DATA(c), &size, sizeof size);
  }
  for (;;) {
    ssize_t n = sendmsg(fd, &msg, 0);
    if (n >= 0) {
      sends++;
      return;
    }
    if (errno == EINTR) continue;
    if (segment > 0 && (errno == EIO || errno == EINVAL)) {
      // No GSO on this path (device or kernel): from now on packet by packet.
      gsoBroken_ = true;
      for (size_t off = 0; off < length; off += segment) SendOne(fd, data + off, std::min(segment, length - off), 0);
      return;
    }
    // EAGAIN/ENOBUFS and the rest: the packets are lost as on a full link; QUIC's loss recovery resends.
    dropped += segment > 0 ? (length + segment - 1) / segment : 1;
    return;
  }
}

}  // namespace quicgate
