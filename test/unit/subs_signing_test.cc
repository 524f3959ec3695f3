// subs/signing: Ed25519 against RFC 8032's vectors, kid as the RFC 7638
// thumbprint (RFC 8037's example), PEM and key-file handling, JWKS and the
// Webhook-Signature header.

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "auth/jwt.h"
#include "subs/signing.h"

namespace ds::subs {
namespace {

std::string unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

SigningKey fresh() {
  auto k = SigningKey::generate();
  EXPECT_TRUE(k.ok());
  return std::move(k).value();
}

// A PEM of a key of another type, made with OpenSSL directly.
std::string other_key_pem(const char* type, const EVP_CIPHER* cipher = nullptr) {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1) return {};
  if (std::string_view(type) == "EC") {
    char group[] = "P-256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("group", group, 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_PKEY_CTX_set_params(ctx.get(), params) != 1) return {};
  }
  if (EVP_PKEY_keygen(ctx.get(), &raw) != 1) return {};
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(raw, EVP_PKEY_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  char pass[] = "secret";
  if (PEM_write_bio_PrivateKey(bio.get(), pkey.get(), cipher,
                               cipher ? reinterpret_cast<unsigned char*>(pass) : nullptr,
                               cipher ? 6 : 0, nullptr, nullptr) != 1)
    return {};
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// ------------------------------------------------------------- RFC vectors

struct Rfc8032Vector {
  const char* secret;
  const char* public_key;
  const char* message;
  const char* signature;
};

// RFC 8032 section 7.1, TEST 1 and TEST 2.
constexpr Rfc8032Vector kTest1{"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                               "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                               "",
                               "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb"
                               "8821590a33bacc61e39701cf9b46b"
                               "d25bf5f0595bbe24655141438e7a100b"};
constexpr Rfc8032Vector kTest2{"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                               "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                               "72",
                               "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085"
                               "ac1e43e15996e458f3613d0f11d8c"
                               "387b2eaeb4302aeeb00d291612bb0c00"};

void check_vector(const Rfc8032Vector& v) {
  auto key = SigningKey::from_seed(unhex(v.secret));
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(hex(key->public_key()), v.public_key);
  const std::string message = unhex(v.message);
  const std::string sig = key->sign(message);
  EXPECT_EQ(hex(sig), v.signature);
  EXPECT_TRUE(key->verify(message, unhex(v.signature)));
  EXPECT_FALSE(key->verify(message + "x", sig));
}

TEST(SubsSigningTest, Rfc8032Test1) { check_vector(kTest1); }
TEST(SubsSigningTest, Rfc8032Test2) { check_vector(kTest2); }

TEST(SubsSigningTest, KidIsTheRfc7638ThumbprintOfRfc8037sExample) {
  // RFC 8037 appendix A.1 is RFC 8032's TEST 1 key; A.3 gives its thumbprint.
  auto key = SigningKey::from_seed(unhex(kTest1.secret));
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->thumbprint_input(),
            R"({"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})");
  EXPECT_EQ(key->kid(), "ds_kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

TEST(SubsSigningTest, KidIsSha256OfTheThumbprintInput) {
  SigningKey key = fresh();
  const std::string input = key.thumbprint_input();
  EXPECT_EQ(input, R"({"crv":"Ed25519","kty":"OKP","x":")" +
                       auth::base64url_encode(key.public_key()) + "\"}");
  unsigned char md[32];
  unsigned int len = 0;
  ASSERT_EQ(EVP_Digest(input.data(), input.size(), md, &len, EVP_sha256(), nullptr), 1);
  EXPECT_EQ(key.kid(),
            "ds_" + auth::base64url_encode(std::string(reinterpret_cast<char*>(md), len)));
  EXPECT_EQ(key.kid().size(), 3u + 43u);
}

// ------------------------------------------------------------- keys and PEM

TEST(SubsSigningTest, GeneratedKeysDiffer) {
  SigningKey a = fresh(), b = fresh();
  EXPECT_NE(a.kid(), b.kid());
  EXPECT_NE(a.public_key(), b.public_key());
  EXPECT_FALSE(b.verify("m", a.sign("m")));
}

TEST(SubsSigningTest, PemRoundTripKeepsKidAndKey) {
  SigningKey a = fresh();
  const std::string pem = a.private_pem();
  EXPECT_EQ(pem.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u) << pem.substr(0, 40);
  auto b = SigningKey::from_pem(pem);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->kid(), a.kid());
  EXPECT_EQ(b->public_key(), a.public_key());
  EXPECT_EQ(b->private_pem(), pem);
  EXPECT_EQ(b->sign("hello"), a.sign("hello"));  // Ed25519 is deterministic
  EXPECT_TRUE(a.verify("hello", b->sign("hello")));
}

TEST(SubsSigningTest, CopiesShareTheKey) {
  SigningKey a = fresh();
  SigningKey b = a;
  EXPECT_EQ(b.kid(), a.kid());
  EXPECT_TRUE(a.verify("m", b.sign("m")));
}

TEST(SubsSigningTest, ConstMethodsRunConcurrently) {
  // The thread-safety promise in signing.h; meaningful under TSan/ASan.
  const SigningKey key = fresh();
  const SigningKey copy = key;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const SigningKey& k = t % 2 ? key : copy;
      for (int i = 0; i < 200; ++i) {
        const std::string m = std::to_string(t) + ":" + std::to_string(i);
        if (!k.verify(m, k.sign(m)) || k.verify(m + "!", k.sign(m))) ++failures;
        if (webhook_signature_header(k, i, m).empty() || k.private_pem().empty()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(SubsSigningTest, FromPemRefusesOtherKeys) {
  for (const char* type : {"EC", "X25519", "ED448"}) {
    const std::string pem = other_key_pem(type);
    ASSERT_FALSE(pem.empty()) << type;
    auto k = SigningKey::from_pem(pem);
    ASSERT_FALSE(k.ok()) << type;
    EXPECT_NE(k.error().message.find("Ed25519"), std::string::npos) << k.error().message;
  }
}

TEST(SubsSigningTest, FromPemRefusesPublicEncryptedAndGarbage) {
  // An encrypted key is refused without prompting for a passphrase.
  const std::string encrypted = other_key_pem("ED25519", EVP_aes_128_cbc());
  ASSERT_NE(encrypted.find("ENCRYPTED"), std::string::npos);
  EXPECT_FALSE(SigningKey::from_pem(encrypted).ok());

  SigningKey key = fresh();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  // A public key PEM ("BEGIN PUBLIC KEY") of an Ed25519 key.
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pub(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                  reinterpret_cast<const unsigned char*>(key.public_key().data()),
                                  32),
      EVP_PKEY_free);
  ASSERT_TRUE(pub);
  ASSERT_EQ(PEM_write_bio_PUBKEY(bio.get(), pub.get()), 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  EXPECT_FALSE(SigningKey::from_pem(std::string(data, static_cast<size_t>(len))).ok());

  EXPECT_FALSE(SigningKey::from_pem("").ok());
  EXPECT_FALSE(SigningKey::from_pem("not a key").ok());
  std::string truncated = key.private_pem();
  truncated.resize(truncated.size() / 2);
  EXPECT_FALSE(SigningKey::from_pem(truncated).ok());
  EXPECT_EQ(SigningKey::from_pem("x").error().code, errc::bad_request);
}

TEST(SubsSigningTest, FromSeedWantsThirtyTwoBytes) {
  EXPECT_FALSE(SigningKey::from_seed(std::string(31, 'a')).ok());
  EXPECT_FALSE(SigningKey::from_seed(std::string(33, 'a')).ok());
  EXPECT_TRUE(SigningKey::from_seed(std::string(32, 'a')).ok());
}

TEST(SubsSigningTest, VerifyRejectsBadSignatures) {
  SigningKey key = fresh();
  std::string sig = key.sign("message");
  ASSERT_EQ(sig.size(), 64u);
  EXPECT_TRUE(key.verify("message", sig));
  EXPECT_FALSE(key.verify("messagf", sig));
  EXPECT_FALSE(key.verify("message", sig.substr(0, 63)));
  EXPECT_FALSE(key.verify("message", sig + "x"));
  EXPECT_FALSE(key.verify("message", ""));
  for (size_t i : {size_t{0}, size_t{31}, size_t{32}, size_t{63}}) {
    std::string bad = sig;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    EXPECT_FALSE(key.verify("message", bad)) << i;
  }
}

// ------------------------------------------------------------- JWKS

TEST(SubsSigningTest, PublicJwkAndJwks) {
  auto rfc = SigningKey::from_seed(unhex(kTest1.secret));
  ASSERT_TRUE(rfc.ok());
  const std::string jwk =
      R"({"kty":"OKP","crv":"Ed25519","kid":"ds_kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",)"
      R"("use":"sig","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})";
  EXPECT_EQ(rfc->public_jwk_json(), jwk);
  EXPECT_EQ(rfc->public_jwk_json().find(rfc->private_pem()), std::string::npos);

  SigningKey other = fresh();
  EXPECT_EQ(jwks_json({&*rfc, &other}),
            R"({"keys":[)" + jwk + "," + other.public_jwk_json() + "]}");
  EXPECT_EQ(jwks_json({}), R"({"keys":[]})");
  EXPECT_EQ(jwks_json({nullptr, &*rfc}), R"({"keys":[)" + jwk + "]}");
}

// ------------------------------------------------------------- Webhook-Signature

TEST(SubsSigningTest, WebhookSignatureHeader) {
  SigningKey key = fresh();
  const std::string body = "{\"subscription_id\":\"sub-1\",\"generation\":7}\n\xff\x00 tail";
  const std::string header = webhook_signature_header(key, 1778324210, body);

  static const std::regex kForm(
      "^t=([0-9]+),kid=(ds_[A-Za-z0-9_-]{43}),ed25519=([A-Za-z0-9_-]{86})$");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(header, m, kForm)) << header;
  EXPECT_EQ(m[1], "1778324210");
  EXPECT_EQ(m[2], key.kid());
  auto sig = auth::base64url_decode(m[3].str());
  ASSERT_TRUE(sig);
  EXPECT_TRUE(key.verify("1778324210." + body, *sig));
  EXPECT_FALSE(key.verify(body, *sig));
  EXPECT_FALSE(key.verify("1778324211." + body, *sig));
  EXPECT_FALSE(key.verify("1778324210." + body + " ", *sig));
  EXPECT_EQ(*sig, key.sign("1778324210." + body));
}

TEST(SubsSigningTest, WebhookSignatureOfAnEmptyBody) {
  SigningKey key = fresh();
  const std::string header = webhook_signature_header(key, 0, "");
  const std::string prefix = "t=0,kid=" + key.kid() + ",ed25519=";
  ASSERT_EQ(header.rfind(prefix, 0), 0u) << header;
  auto sig = auth::base64url_decode(header.substr(prefix.size()));
  ASSERT_TRUE(sig);
  EXPECT_TRUE(key.verify("0.", *sig));
}

// ------------------------------------------------------------- load_or_create

class SubsKeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ds_subs_signing_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/webhook.pem";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void spit(const std::string& path, const std::string& data) {
    std::ofstream(path, std::ios::binary) << data;
  }
  static unsigned mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return st.st_mode & 07777;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(SubsKeyFileTest, CreatesAPrivateFileAndReloadsTheSameKey) {
  auto created = SigningKey::load_or_create(path_);
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(mode(path_), 0600u);
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
  const std::string pem = slurp(path_);
  EXPECT_EQ(pem, created->private_pem());

  auto loaded = SigningKey::load_or_create(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->kid(), created->kid());
  EXPECT_EQ(slurp(path_), pem);  // loading never rewrites
  EXPECT_TRUE(created->verify("m", loaded->sign("m")));
}

TEST_F(SubsKeyFileTest, LoadsAKeyWrittenByOthers) {
  auto rfc = SigningKey::from_seed(unhex(kTest2.secret));
  ASSERT_TRUE(rfc.ok());
  spit(path_, rfc->private_pem());
  auto loaded = SigningKey::load_or_create(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->kid(), rfc->kid());
}

TEST_F(SubsKeyFileTest, RefusesACorruptFileAndLeavesItAlone) {
  for (const std::string& junk : {std::string("garbage\n"), std::string(), other_key_pem("EC")}) {
    spit(path_, junk);
    auto k = SigningKey::load_or_create(path_);
    ASSERT_FALSE(k.ok());
    EXPECT_EQ(k.error().code, errc::bad_request);
    EXPECT_NE(k.error().message.find(path_), std::string::npos) << k.error().message;
    EXPECT_EQ(slurp(path_), junk);
  }
  // Half a key (a torn copy) is refused too.
  std::string pem = fresh().private_pem();
  spit(path_, pem.substr(0, pem.size() - 20));
  EXPECT_FALSE(SigningKey::load_or_create(path_).ok());
}

TEST_F(SubsKeyFileTest, ReplacesAStaleTmpFromACrash) {
  spit(path_ + ".tmp", "half-written");
  ::chmod((path_ + ".tmp").c_str(), 0644);
  auto k = SigningKey::load_or_create(path_);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(mode(path_), 0600u);
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
  EXPECT_EQ(SigningKey::load_or_create(path_)->kid(), k->kid());
}

TEST_F(SubsKeyFileTest, FileSystemErrors) {
  auto missing_dir = SigningKey::load_or_create(dir_ + "/no/such/dir/key.pem");
  ASSERT_FALSE(missing_dir.ok());
  EXPECT_EQ(missing_dir.error().code, errc::storage_failure);

  std::filesystem::create_directory(path_);  // a directory where the key should be
  auto is_dir = SigningKey::load_or_create(path_);
  EXPECT_FALSE(is_dir.ok());
  EXPECT_TRUE(std::filesystem::is_directory(path_));
}

}  // namespace
}  // namespace ds::subs
