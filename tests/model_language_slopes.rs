//! fixest's model language, issue 28, item 4: varying slopes `fe[x]`, `fe[[x]]`, `fe[x1, x2]`.
//! Not built yet (the demeaning solver does not absorb slopes): until it is, such a formula is
//! an error pointing at the `[` and naming the alternative, never a fit of something else.

mod common;
mod model_language;

use model_language::{cells, fit_error, write_csv};

#[test]
fn varying_slopes_are_refused_pointing_at_the_bracket() {
    let data = write_csv(
        "slopes.csv",
        &[
            ("y".into(), cells(&[1.0, 2.0, 3.0, 4.5])),
            ("x".into(), cells(&[0.5, 1.0, 0.0, 2.0])),
            ("f".into(), vec!["1".into(), "1".into(), "2".into(), "2".into()]),
        ],
    );
    for formula in ["y ~ x | f[x]", "y ~ 1 | f[[x]]", "y ~ x | f + f[x, x]"] {
        let e = fit_error(&data, formula, &[]);
        let at = formula.find('[').unwrap() + 1;
        assert!(e.contains(&format!("character {at}")), "{formula}: {e}");
        assert!(e.contains("varying slopes") && e.contains("i(fe, x)"), "{formula}: {e}");
    }
}
