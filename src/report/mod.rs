//! A run's record: what it holds (`model`), writing it into the state folder (`record`),
//! the score table (`render`), the HTML page with its charts (`html`, `svg`), and its forms
//! for CI: JUnit XML (`junit`) and GitHub Actions output (`github`).

pub mod github;
pub mod html;
pub mod junit;
pub mod markup;
pub mod model;
pub mod record;
pub mod render;
pub mod svg;
