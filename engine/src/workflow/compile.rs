//! Compiling checked templates into the two Handlebars registries a
//! [`Catalog`] renders with: HTML bodies (values escaped) and everything
//! else (addresses, subject, text, headers: not escaped).
use handlebars::Handlebars;

use super::Problem;
use super::check::TemplateSource;
use super::source::Partial;

/// The registries being filled, and the problems found on the way.
pub struct Registries {
    pub html: Handlebars<'static>,
    pub plain: Handlebars<'static>,
}

impl Registries {
    pub fn new() -> Registries {
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        super::helpers::register(&mut html);
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        super::helpers::register(&mut plain);
        Registries { html, plain }
    }

    /// Register every partial in both registries (a partial may be used by
    /// HTML and text templates alike).
    pub fn partials(&mut self, partials: &[Partial], problems: &mut Vec<Problem>) {
        for p in partials {
            for reg in [&mut self.html, &mut self.plain] {
                if let Err(e) = reg.register_partial(&p.name, &p.text) {
                    problems.push(Problem::in_file(
                        &p.file,
                        format!("invalid partial: {}", e.reason()),
                    ));
                    break;
                }
            }
        }
    }

    /// Register one workflow template.
    pub fn template(&mut self, t: &TemplateSource, problems: &mut Vec<Problem>) {
        let reg = if t.html {
            &mut self.html
        } else {
            &mut self.plain
        };
        if let Err(e) = reg.register_template_string(&t.id.to_string(), &t.text) {
            problems.push(Problem::at(
                &t.file,
                &t.loc,
                format!("{}: invalid template: {}", t.what, e.reason()),
            ));
        }
    }
}
