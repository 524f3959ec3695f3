// auth/keys: secrets, PEM public keys and JWK Sets, each pinned to one algorithm.

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "auth/keys.h"
#include "auth_test_util.h"

namespace ds::auth {
namespace {

using namespace testkit;

std::string write_temp(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() /
              ("ds_auth_keys_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

TEST(AuthKeysTest, AlgNames) {
  EXPECT_EQ(alg_from_name("HS256"), Alg::hs256);
  EXPECT_EQ(alg_from_name("RS256"), Alg::rs256);
  EXPECT_EQ(alg_from_name("ES256"), Alg::es256);
  EXPECT_FALSE(alg_from_name("none"));
  EXPECT_FALSE(alg_from_name("hs256"));
  EXPECT_STREQ(alg_name(Alg::es256), "ES256");
}

TEST(AuthKeysTest, HmacSecretNeeds32Bytes) {
  EXPECT_FALSE(Key::hmac(std::string(31, 'k')).ok());
  auto k = Key::hmac(std::string(32, 'k'));
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->alg(), Alg::hs256);
  EXPECT_EQ(k->secret(), std::string(32, 'k'));
}

TEST(AuthKeysTest, PemKeyTypeDecidesTheAlgorithm) {
  auto rsa = Key::from_pem(public_pem(rsa_key()));
  ASSERT_TRUE(rsa.ok()) << rsa.error().message;
  EXPECT_EQ(rsa->alg(), Alg::rs256);
  auto ec = Key::from_pem(public_pem(ec_key()));
  ASSERT_TRUE(ec.ok()) << ec.error().message;
  EXPECT_EQ(ec->alg(), Alg::es256);
}

TEST(AuthKeysTest, RefusesWeakOrUnsupportedKeys) {
  PkeyPtr rsa1024 = wrap(EVP_RSA_gen(1024));
  EXPECT_FALSE(Key::from_pem(public_pem(rsa1024.get())).ok());
  PkeyPtr p384 = wrap(EVP_EC_gen("P-384"));
  EXPECT_FALSE(Key::from_pem(public_pem(p384.get())).ok());
  PkeyPtr ed = wrap(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  EXPECT_FALSE(Key::from_pem(public_pem(ed.get())).ok());
  EXPECT_FALSE(Key::from_pem(private_pem(ec_key())).ok()) << "a private key is not a public key";
  EXPECT_FALSE(Key::from_pem("not a pem").ok());
  EXPECT_FALSE(Key::from_pem("").ok());
}

TEST(AuthKeysTest, LoadsPemFile) {
  auto path = write_temp("rsa.pem", public_pem(rsa_key()));
  auto k = load_pem_file(path);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->alg(), Alg::rs256);
  std::filesystem::remove(path);
  EXPECT_FALSE(load_pem_file(path).ok());
}

TEST(AuthKeysTest, ParsesJwks) {
  auto keys = parse_jwks("{\"keys\":[" + jwk(rsa_key(), "r1", "\"alg\":\"RS256\",\"use\":\"sig\"") +
                         "," + jwk(ec_key(), "e1", "\"alg\":\"ES256\"") + "]}");
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].alg(), Alg::rs256);
  EXPECT_EQ((*keys)[0].kid(), "r1");
  EXPECT_EQ((*keys)[1].alg(), Alg::es256);
  EXPECT_EQ((*keys)[1].kid(), "e1");
}

TEST(AuthKeysTest, JwksSkipsKeysItDoesNotUse) {
  auto keys = parse_jwks(R"({"keys":[{"kty":"oct","k":"c2VjcmV0"},)" +
                         jwk(other_rsa_key(), "enc", "\"use\":\"enc\"") + "," +
                         jwk(rsa_key(), "sig") + "]}");
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].kid(), "sig");
}

TEST(AuthKeysTest, JwksRejectsBadInput) {
  EXPECT_FALSE(parse_jwks("").ok());
  EXPECT_FALSE(parse_jwks("{}").ok());
  EXPECT_FALSE(parse_jwks(R"({"keys":[]})").ok());
  EXPECT_FALSE(parse_jwks(R"({"keys":[{"kty":"oct","k":"c2VjcmV0"}]})").ok()) << "no usable key";
  EXPECT_FALSE(parse_jwks(R"({"keys":[{"kty":"RSA","n":"AQAB"}]})").ok()) << "no e";
  EXPECT_FALSE(parse_jwks(R"({"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]})").ok()) << "tiny";
  // alg that contradicts the key type
  EXPECT_FALSE(parse_jwks("{\"keys\":[" + jwk(rsa_key(), "r", "\"alg\":\"HS256\"") + "]}").ok());
  EXPECT_FALSE(parse_jwks("{\"keys\":[" + jwk(ec_key(), "e", "\"alg\":\"RS256\"") + "]}").ok());
  // EC point not on the curve
  std::string bad = jwk(ec_key(), "e");
  auto y = bad.find("\"y\":\"") + 5;
  bad[y] = bad[y] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(parse_jwks("{\"keys\":[" + bad + "]}").ok());
  // x of the wrong length
  EXPECT_FALSE(parse_jwks(R"({"keys":[{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}]})").ok());
  // padded base64 in n
  std::string padded = jwk(rsa_key(), "p");
  padded.insert(padded.find("\",\"e\""), "==");
  EXPECT_FALSE(parse_jwks("{\"keys\":[" + padded + "]}").ok());
}

TEST(AuthKeysTest, LoadsJwksFile) {
  auto path = write_temp("jwks.json", "{\"keys\":[" + jwk(ec_key(), "k") + "]}");
  auto keys = load_jwks_file(path);
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  EXPECT_EQ(keys->size(), 1u);
  std::filesystem::remove(path);
  EXPECT_FALSE(load_jwks_file(path).ok());
}

TEST(AuthKeysTest, CandidatesFollowAlgorithmAndKid) {
  KeySet set = keys_of({Key::hmac(kSecret), Key::from_pem(public_pem(rsa_key()), "a"),
                        Key::from_pem(public_pem(other_rsa_key()), "b"),
                        Key::from_pem(public_pem(ec_key()))});
  EXPECT_EQ(set.candidates(Alg::hs256, std::nullopt).size(), 1u);
  EXPECT_EQ(set.candidates(Alg::rs256, std::nullopt).size(), 2u);
  auto a = set.candidates(Alg::rs256, "a");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0]->kid(), "a");
  EXPECT_TRUE(set.candidates(Alg::rs256, "zz").empty());
  // Keys without a kid match tokens with any kid.
  EXPECT_EQ(set.candidates(Alg::es256, "whatever").size(), 1u);
  EXPECT_EQ(set.candidates(Alg::hs256, "whatever").size(), 1u);
}

}  // namespace
}  // namespace ds::auth
