//! Industry codes of the firm survey and Table 5's industry split.
//!
//! The paper splits firms into digital industrialisation, C39 (computers, communication and other
//! electronic equipment), and industrial digitalisation, C35–C38 and C40 (its note ①); firms of
//! every other industry are in neither group. Those are divisions of the 2011/2017 national
//! classification (GB/T 4754-2011 and -2017 number the manufacturing divisions alike). The
//! survey used GB/T 4754-2002 up to 2011, whose divisions are numbered differently: read as
//! 2017 codes, its 40 (electronics) would land in C40 and its 39 (electrical machinery) in C39.
//! So a code of a survey year up to 2011 is first mapped to its 2017 division:
//!
//! | GB/T 4754-2002 division | 2017 division |
//! |---|---|
//! | 13–28 (food … chemical fibres) | the same number |
//! | 29 rubber, 30 plastics | C29 |
//! | 31–34 (non-metallic minerals … metal products) | one less: C30–C33 |
//! | 35 general-purpose machinery | C34 |
//! | 36 special-purpose machinery | C35 |
//! | 37 transport equipment: group 372 motor vehicles | C36 |
//! | 37 transport equipment: the other groups (rail, ships, aircraft, motorcycles, bicycles) | C37 |
//! | 39 electrical machinery | C38 |
//! | 40 communication equipment, computers, electronics | C39 |
//! | 41 instruments and office machinery: group 415 cultural and office machinery | C34 |
//! | 41 instruments and office machinery: the other groups | C40 |
//! | 42 crafts and other manufacturing | C41 (its crafts group went to C24: outside the split either way) |
//! | 43 recycling | C42 |
//!
//! (GB/T 4754-2011's correspondence with the 2002 version, read at division level and, for the
//! two divisions that split, at group level; moves of single classes are not followed.)

/// Last survey year coded with GB/T 4754-2002 (the survey switched to GB/T 4754-2011 in 2012).
pub const LAST_YEAR_OF_2002_CODES: i64 = 2011;

/// GB/T 4754-2002 manufacturing division → GB/T 4754-2017 division (37 and 41 by group, see
/// [`division_2017`]); 2002 has no division 38.
pub const DIVISIONS_2002: [(u32, u32); 30] = [
    (13, 13),
    (14, 14),
    (15, 15),
    (16, 16),
    (17, 17),
    (18, 18),
    (19, 19),
    (20, 20),
    (21, 21),
    (22, 22),
    (23, 23),
    (24, 24),
    (25, 25),
    (26, 26),
    (27, 27),
    (28, 28),
    (29, 29), // rubber → C29 rubber and plastics
    (30, 29), // plastics → C29 rubber and plastics
    (31, 30),
    (32, 31),
    (33, 32),
    (34, 33),
    (35, 34),
    (36, 35),
    (37, 37), // by group: 372 → C36, the rest → C37
    (39, 38),
    (40, 39),
    (41, 40), // by group: 415 → C34, the rest → C40
    (42, 41),
    (43, 42),
];

/// The 2017 division (e.g. `"C39"`) of a survey industry code of `year`: digits with or without
/// the section letter ("4041", "C4041", "40"); codes of years up to
/// [`LAST_YEAR_OF_2002_CODES`] are read as GB/T 4754-2002 and mapped, later ones are read as
/// they are. `None` for a code that is not a manufacturing division.
pub fn division_2017(code: &str, year: i64) -> Option<String> {
    let digits: String = code
        .trim()
        .trim_start_matches(['C', 'c'])
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let div: u32 = digits.get(..2)?.parse().ok()?;
    if year > LAST_YEAR_OF_2002_CODES {
        return (13..=43).contains(&div).then(|| format!("C{div:02}"));
    }
    let group = digits.get(2..3).and_then(|g| g.parse::<u32>().ok());
    let new = match (div, group) {
        (37, Some(2)) => 36,
        (41, Some(5)) => 34,
        _ => DIVISIONS_2002.iter().find(|(old, _)| *old == div)?.1,
    };
    Some(format!("C{new:02}"))
}

/// Table 5's group of a 2017 division: `Some(true)` for digital industrialisation (C39),
/// `Some(false)` for industrial digitalisation (C35–C38, C40), `None` for every other industry.
pub fn digital_industry(division: &str) -> Option<bool> {
    match division {
        "C39" => Some(true),
        "C35" | "C36" | "C37" | "C38" | "C40" => Some(false),
        _ => None,
    }
}
