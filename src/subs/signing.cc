#include "subs/signing.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "auth/jwt.h"

namespace ds::subs {

namespace {

constexpr size_t kRawKeyBytes = 32;
constexpr size_t kSignatureBytes = 64;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};

Error key_error(std::string msg) { return Error(errc::bad_request, std::move(msg)); }

Error io_error(const char* what, const std::string& path, int err) {
  return Error(errc::storage_failure, std::string(what) + " '" + path + "': " + std::strerror(err));
}
// For the call that just failed: errno is read before anything can allocate.
Error io_error(const char* what, const std::string& path) { return io_error(what, path, errno); }

const unsigned char* uc(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// A failed OpenSSL call leaves entries on this thread's error queue; drop
// them so they are not reported against some later, unrelated call.
template <class T>
T drop_openssl_errors(T value) {
  ERR_clear_error();
  return value;
}

// Refuses to decrypt: an encrypted key file would otherwise make OpenSSL
// prompt on the terminal.
int no_passphrase(char*, int, int, void*) { return -1; }

std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  return std::string(reinterpret_cast<const char*>(md), len);
}

Result<std::string> read_key_file(int fd, const std::string& path) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("cannot read the webhook signing key", path);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxKeyFileBytes)
      return key_error("webhook signing key file '" + path + "' is too large to be a key");
  }
}

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("cannot write the webhook signing key", path);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Unit{};
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open the directory of the webhook signing key", dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return io_error("cannot fsync the directory of the webhook signing key", dir, err);
  return Unit{};
}

// Writes `pem` to `tmp` (mode 0600) and syncs it. The file is private from
// its creation: open() applies the mode, fchmod() covers a stale tmp left by
// an earlier crash with other permissions.
Status write_private_file(const std::string& tmp, std::string_view pem) {
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return io_error("cannot create", tmp);
  Status st = Unit{};
  if (::fchmod(fd, 0600) != 0) st = io_error("cannot chmod", tmp);
  if (st.ok()) st = write_all(fd, pem, tmp);
  if (st.ok() && ::fsync(fd) != 0) st = io_error("cannot fsync", tmp);
  if (::close(fd) != 0 && st.ok()) st = io_error("cannot close", tmp);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

enum class Placed { ours, theirs };

// Moves `tmp` to `path` unless a file appeared at `path` since we looked
// (another process creating the key at the same time): the key already
// published there wins, and is never replaced.
Result<Placed> place_without_replacing(const std::string& tmp, const std::string& path) {
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0)
    return Placed::ours;
  int err = errno;
  if (err == EEXIST) {
    ::unlink(tmp.c_str());
    return Placed::theirs;
  }
  if (err == EINVAL || err == ENOSYS) {
    // The file system cannot rename without replacing; a hard link can
    // (and fails with EEXIST when the target exists).
    if (::link(tmp.c_str(), path.c_str()) == 0) {
      ::unlink(tmp.c_str());
      return Placed::ours;
    }
    err = errno;
    ::unlink(tmp.c_str());
    if (err == EEXIST) return Placed::theirs;
  } else {
    ::unlink(tmp.c_str());
  }
  return io_error("cannot move the new webhook signing key into place at", path, err);
}

Result<SigningKey> load_existing(int fd, const std::string& path) {
  auto pem = read_key_file(fd, path);
  ::close(fd);
  if (!pem) return std::move(pem).error();
  auto key = SigningKey::from_pem(*pem);
  if (!key)
    return key_error("webhook signing key file '" + path + "' exists but is unusable (" +
                     key.error().message + "); it is left untouched");
  return key;
}

}  // namespace

Result<SigningKey> SigningKey::from_pkey(EVP_PKEY* raw) {
  std::shared_ptr<EVP_PKEY> pkey(raw, PkeyFree{});
  if (!pkey) return drop_openssl_errors(key_error("cannot create an Ed25519 key"));
  if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519) {
    const char* type = EVP_PKEY_get0_type_name(pkey.get());
    return key_error(std::string("the webhook signing key must be an Ed25519 private key, not ") +
                     (type ? type : "another type"));
  }
  unsigned char pub[kRawKeyBytes];
  size_t pub_len = sizeof pub;
  if (EVP_PKEY_get_raw_public_key(pkey.get(), pub, &pub_len) != 1 || pub_len != kRawKeyBytes)
    return drop_openssl_errors(key_error("cannot read the Ed25519 public key"));
  // Signing needs the private half; a public key alone is not a signing key.
  unsigned char priv[kRawKeyBytes];
  size_t priv_len = sizeof priv;
  const bool has_private = EVP_PKEY_get_raw_private_key(pkey.get(), priv, &priv_len) == 1;
  OPENSSL_cleanse(priv, sizeof priv);
  if (!has_private) return drop_openssl_errors(key_error("the Ed25519 key has no private part"));

  SigningKey key;
  key.pkey_ = std::move(pkey);
  key.public_key_.assign(reinterpret_cast<const char*>(pub), pub_len);
  const std::string digest = sha256(key.thumbprint_input());
  if (digest.empty()) return drop_openssl_errors(key_error("cannot hash the Ed25519 public key"));
  key.kid_ = "ds_" + auth::base64url_encode(digest);
  return key;
}

Result<SigningKey> SigningKey::generate() {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  EVP_PKEY* pkey = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &pkey) != 1)
    return drop_openssl_errors(key_error("cannot generate an Ed25519 key"));
  return from_pkey(pkey);
}

Result<SigningKey> SigningKey::from_pem(std::string_view pem) {
  if (pem.size() > kMaxKeyFileBytes) return key_error("the PEM is too large to be a key");
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return drop_openssl_errors(key_error("cannot read the PEM"));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr);
  if (!pkey)
    return drop_openssl_errors(
        key_error("not an unencrypted PKCS#8 private key PEM (BEGIN PRIVATE KEY)"));
  return from_pkey(pkey);
}

Result<SigningKey> SigningKey::from_seed(std::string_view seed) {
  if (seed.size() != kRawKeyBytes) return key_error("an Ed25519 private key is 32 bytes");
  EVP_PKEY* pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, uc(seed), seed.size());
  if (!pkey) return drop_openssl_errors(key_error("cannot import the Ed25519 private key"));
  return from_pkey(pkey);
}

Result<SigningKey> SigningKey::load_or_create(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) return load_existing(fd, path);
  if (errno != ENOENT) return io_error("cannot open the webhook signing key", path);

  auto key = generate();
  if (!key) return key;
  const std::string pem = key->private_pem();
  if (pem.empty()) return key_error("cannot encode the new webhook signing key");
  const std::string tmp = path + ".tmp";
  if (Status st = write_private_file(tmp, pem); !st) return std::move(st).error();
  auto placed = place_without_replacing(tmp, path);
  if (!placed) return std::move(placed).error();
  if (*placed == Placed::theirs) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return io_error("cannot open the webhook signing key", path);
    return load_existing(fd, path);
  }
  if (Status st = fsync_dir(parent_dir(path)); !st) return std::move(st).error();
  return key;
}

std::string SigningKey::private_pem() const {
  if (!pkey_) return {};  // moved from
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio) return drop_openssl_errors(std::string());
  // PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY").
  if (PEM_write_bio_PrivateKey(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return drop_openssl_errors(std::string());
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || !data) return {};
  std::string out(data, static_cast<size_t>(len));
  OPENSSL_cleanse(data, static_cast<size_t>(len));
  return out;
}

std::string SigningKey::thumbprint_input() const {
  return R"({"crv":"Ed25519","kty":"OKP","x":")" + auth::base64url_encode(public_key_) + "\"}";
}

std::string SigningKey::public_jwk_json() const {
  // kid and x are base64url (plus "ds_"): nothing in them needs escaping.
  return R"({"kty":"OKP","crv":"Ed25519","kid":")" + kid_ + R"(","use":"sig","alg":"EdDSA","x":")" +
         auth::base64url_encode(public_key_) + "\"}";
}

std::string SigningKey::sign(std::string_view message) const {
  if (!pkey_) return {};  // moved from
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  // Ed25519 is "pure" EdDSA: no digest is named, and the message is signed
  // in one shot.
  std::string sig(kSignatureBytes, '\0');
  size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, uc(message),
                     message.size()) != 1 ||
      len != kSignatureBytes)
    return drop_openssl_errors(std::string());
  return sig;
}

bool SigningKey::verify(std::string_view message, std::string_view signature) const {
  if (!pkey_ || signature.size() != kSignatureBytes) return false;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey_.get()) != 1)
    return drop_openssl_errors(false);
  const bool ok = EVP_DigestVerify(ctx.get(), uc(signature), signature.size(), uc(message),
                                   message.size()) == 1;
  return ok ? true : drop_openssl_errors(false);
}

std::string jwks_json(const std::vector<const SigningKey*>& keys) {
  std::string out = R"({"keys":[)";
  bool first = true;
  for (const SigningKey* key : keys) {
    if (!key) continue;
    if (!first) out += ',';
    first = false;
    out += key->public_jwk_json();
  }
  out += "]}";
  return out;
}

std::string webhook_signature_header(const SigningKey& key, int64_t unix_seconds,
                                     std::string_view body) {
  const std::string t = std::to_string(unix_seconds);
  std::string message;
  message.reserve(t.size() + 1 + body.size());
  message.append(t).append(1, '.').append(body);
  return "t=" + t + ",kid=" + key.kid() + ",ed25519=" + auth::base64url_encode(key.sign(message));
}

}  // namespace ds::subs
