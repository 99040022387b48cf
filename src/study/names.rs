//! Firm identity for matching customs records to the industrial-firm survey (Upward, Wang &
//! Zheng 2013; Yu 2015): names are compared after normalisation (full-width → half-width, spaces
//! and brackets removed, ASCII lower-cased, legal-form suffix variants unified); the fallback key
//! is the last 7 digits of the phone number plus the 6-digit postcode. Trading intermediaries
//! (names with 贸易, 进出口, 物流, 供应链 …) are excluded, as the study does.

/// Full-width ASCII (U+FF01–U+FF5E) to half-width and the ideographic space to a space: the
/// part of NFKC that firm names need.
fn half_width(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

/// Legal-form suffixes written in several ways; longest first so the most specific is cut.
const SUFFIXES: [&str; 8] = [
    "股份有限公司",
    "有限责任公司",
    "集团有限公司",
    "有限公司",
    "股份公司",
    "总公司",
    "分公司",
    "公司",
];

/// Normalise a firm name for exact matching within a year.
/// (One allocation of the name's length: matching normalises every name of both sides.)
pub fn normalise_name(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    s.extend(
        name.chars()
            .map(half_width)
            .filter(|c| {
                !c.is_whitespace()
                    && !matches!(
                        c,
                        '(' | ')' | '[' | ']' | '（' | '）' | '【' | '】' | '〔' | '〕' | '·' | '.' | ',' | '，' | '、'
                    )
            })
            .map(|c| c.to_ascii_lowercase()),
    );
    for suf in SUFFIXES {
        if let Some(kept) = s.strip_suffix(suf).map(str::len).filter(|&k| k > 0) {
            s.truncate(kept);
            break;
        }
    }
    s
}

/// Words that mark a trading intermediary (exporters that do not produce the goods).
pub const INTERMEDIARY_WORDS: [&str; 8] = ["贸易", "进出口", "物流", "供应链", "外贸", "经贸", "货运", "商贸"];

pub fn is_intermediary(name: &str) -> bool {
    let n = normalise_name(name);
    INTERMEDIARY_WORDS.iter().any(|w| n.contains(w))
}

/// The last 7 digits of a phone number, if it has at least 7 (area codes and separators vary).
pub fn phone7(phone: &str) -> Option<String> {
    let digits: String = phone.chars().map(half_width).filter(|c| c.is_ascii_digit()).collect();
    (digits.len() >= 7).then(|| digits[digits.len() - 7..].to_string())
}

/// A 6-digit postcode, if the field holds one.
pub fn postcode(code: &str) -> Option<String> {
    let digits: String = code.chars().map(half_width).filter(|c| c.is_ascii_digit()).collect();
    (digits.len() == 6).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_variants_normalise_to_one_key() {
        let a = normalise_name("深圳市华强电子有限公司");
        assert_eq!(a, "深圳市华强电子");
        assert_eq!(normalise_name("深圳市华强电子有限责任公司"), a);
        assert_eq!(normalise_name("深圳市 华强电子（有限公司）"), a);
        assert_eq!(normalise_name("深圳市华强电子股份有限公司"), a);
        // full-width Latin letters and digits
        assert_eq!(normalise_name("ＴＣＬ科技１号有限公司"), "tcl科技1号");
        assert_eq!(normalise_name("【ABC】 Electronics"), "abcelectronics");
        // a bare suffix is not stripped to nothing
        assert_eq!(normalise_name("公司"), "公司");
    }

    #[test]
    fn intermediaries_are_recognised() {
        assert!(is_intermediary("宁波某某进出口有限公司"));
        assert!(is_intermediary("上海供应链管理有限公司"));
        assert!(!is_intermediary("杭州电子仪器厂"));
    }

    #[test]
    fn phone_and_postcode_keys() {
        assert_eq!(phone7("0755-8321 4567").as_deref(), Some("3214567"));
        assert_eq!(phone7("（０７５５）８３２１４５６７").as_deref(), Some("3214567"));
        assert_eq!(phone7("12345"), None);
        assert_eq!(postcode("518000").as_deref(), Some("518000"));
        assert_eq!(postcode("5180"), None);
    }
}
