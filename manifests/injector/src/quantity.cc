// quantity: Kubernetes' resource.Quantity grammar and its canonical spelling.
#include "skiff/inject/quantity.h"

#include <cctype>

namespace skiff::inject {
namespace {

using i128 = __int128;

// Values are held in nano-units (10^-9), so every decimal suffix down to "n" is exact.
constexpr i128 kNano = 1000000000;

std::string toString(i128 v) {
  if (v == 0) return "0";
  std::string s;
  while (v > 0) {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  return s;
}

i128 pow10(int e) {
  i128 r = 1;
  while (e-- > 0) r *= 10;
  return r;
}

}  // namespace

std::optional<std::string> canonicalQuantity(std::string_view text) {
  size_t i = 0;
  if (i < text.size() && text[i] == '+') ++i;
  // Mantissa: digits with an optional fraction, kept as an integer plus the number of fraction digits.
  i128 mantissa = 0;
  int frac_digits = 0;
  size_t digits = 0;
  bool dot = false;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      if (mantissa > (i128(1) << 100)) return std::nullopt;
      mantissa = mantissa * 10 + (c - '0');
      ++digits;
      if (dot) ++frac_digits;
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  if (digits == 0) return std::nullopt;
  std::string_view suffix = text.substr(i);
  bool binary = false;
  int dec_exp = 0;  // power of 10
  int bin_exp = 0;  // power of 1024
  if (suffix.empty()) {
  } else if (suffix == "n") {
    dec_exp = -9;
  } else if (suffix == "u") {
    dec_exp = -6;
  } else if (suffix == "m") {
    dec_exp = -3;
  } else if (suffix == "k") {
    dec_exp = 3;
  } else if (suffix == "M") {
    dec_exp = 6;
  } else if (suffix == "G") {
    dec_exp = 9;
  } else if (suffix == "T") {
    dec_exp = 12;
  } else if (suffix == "P") {
    dec_exp = 15;
  } else if (suffix == "E") {
    dec_exp = 18;
  } else if (suffix.size() == 2 && suffix[1] == 'i') {
    binary = true;
    const std::string_view units = "KMGTPE";
    size_t u = units.find(suffix[0]);
    if (u == std::string_view::npos) return std::nullopt;
    bin_exp = static_cast<int>(u) + 1;
  } else if (suffix[0] == 'e' || suffix[0] == 'E') {
    std::string_view e = suffix.substr(1);
    bool neg = false;
    if (!e.empty() && (e[0] == '-' || e[0] == '+')) {
      neg = e[0] == '-';
      e.remove_prefix(1);
    }
    if (e.empty() || e.size() > 2) return std::nullopt;
    for (char c : e) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
      dec_exp = dec_exp * 10 + (c - '0');
    }
    if (neg) dec_exp = -dec_exp;
    if (dec_exp > 18 || dec_exp < -9) return std::nullopt;
  } else {
    return std::nullopt;
  }

  // value (in nano-units) = mantissa * 10^(dec_exp + 9 - frac_digits) * 1024^bin_exp
  int shift = dec_exp + 9 - frac_digits;
  i128 nano = mantissa;
  if (shift >= 0) {
    if (shift > 30) return std::nullopt;
    nano *= pow10(shift);
  } else {
    i128 div = pow10(-shift);
    // Kubernetes rounds sub-nano precision up.
    nano = (nano + div - 1) / div;
  }
  for (int k = 0; k < bin_exp; ++k) nano *= 1024;
  if (nano > (i128(1) << 120)) return std::nullopt;

  if (binary && nano % kNano == 0) {
    i128 whole = nano / kNano;
    static const char* kBin[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int u = 0;
    while (u < 6 && whole != 0 && whole % 1024 == 0) {
      whole /= 1024;
      ++u;
    }
    return toString(whole) + kBin[u];
  }
  // Decimal SI: the largest suffix (multiple of 3) that leaves an integer.
  static const char* kDec[] = {"n", "u", "m", "", "k", "M", "G", "T", "P", "E"};
  if (nano == 0) return std::string("0");
  int u = 0;
  i128 v = nano;
  while (u < 9 && v % 1000 == 0) {
    v /= 1000;
    ++u;
  }
  return toString(v) + kDec[u];
}

}  // namespace skiff::inject
