//! The prison slice of the organisation directory (DESIGN §9): the MoJ prison register's
//! healthcare ODS codes, read once at start-up from the file the repository ships
//! (`directory/prison-register.csv`; source, date and licence in `directory/README.md`).
//!
//! Only a row marked active is a prison healthcare unit. Routing asks the register, never the
//! document, whether an organisation is a prison: a transfer is routed only to one.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};

use crate::domain::OdsCode;

/// The header the register file must have (the source's columns, in its order).
pub const COLUMNS: &str = "nomis_prison_id,name,active,gp_practice_ods_codes";

/// One register row, as the gateway keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prison {
    /// The NOMIS prison id (`BLI`).
    pub nomis_id: String,
    pub name: String,
    pub active: bool,
}

/// The prison healthcare units, by ODS code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrisonRegister {
    /// Every register row naming the code (two prisons may share one healthcare unit).
    by_ods: BTreeMap<OdsCode, Vec<Prison>>,
}

impl PrisonRegister {
    /// Reads the register from its CSV text. A line that does not fit (columns, `active`, an ODS
    /// code that is not exactly one) fails the whole load: a register half-read would route
    /// custody data by guesswork.
    pub fn parse(text: &str) -> anyhow::Result<PrisonRegister> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, header)) if header.trim_end_matches('\r') == COLUMNS => {}
            _ => bail!("the first line must be the header {COLUMNS}"),
        }
        let mut by_ods: BTreeMap<OdsCode, Vec<Prison>> = BTreeMap::new();
        for (i, line) in lines {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let n = i + 1;
            if line.contains('"') {
                bail!("line {n}: quoted fields are not supported");
            }
            let fields: Vec<&str> = line.split(',').collect();
            let [nomis_id, name, active, codes] = fields.as_slice() else {
                bail!("line {n}: expected 4 columns ({COLUMNS})");
            };
            let active = match *active {
                "true" => true,
                "false" => false,
                other => bail!("line {n}: active must be true or false, not {other:?}"),
            };
            for code in codes.split(';').filter(|c| !c.is_empty()) {
                let ods = OdsCode::parse(code).map_err(|e| anyhow::anyhow!("line {n}: {e}"))?;
                by_ods.entry(ods).or_default().push(Prison {
                    nomis_id: nomis_id.to_string(),
                    name: name.to_string(),
                    active,
                });
            }
        }
        Ok(PrisonRegister { by_ods })
    }

    /// Reads the register file.
    pub fn load(path: &Path) -> anyhow::Result<PrisonRegister> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the prison register {}", path.display()))?;
        PrisonRegister::parse(&text)
            .with_context(|| format!("reading the prison register {}", path.display()))
    }

    /// Whether `ods` is the healthcare unit of a prison on an active register row. Codes are
    /// compared exactly as registered.
    pub fn is_prison_healthcare(&self, ods: &OdsCode) -> bool {
        self.by_ods
            .get(ods)
            .is_some_and(|rows| rows.iter().any(|p| p.active))
    }

    /// The register rows naming `ods` (active or not).
    pub fn prisons(&self, ods: &OdsCode) -> &[Prison] {
        self.by_ods.get(ods).map(Vec::as_slice).unwrap_or(&[])
    }

    /// How many healthcare ODS codes are on active rows.
    pub fn active_units(&self) -> usize {
        self.by_ods
            .values()
            .filter(|rows| rows.iter().any(|p| p.active))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ods(s: &str) -> OdsCode {
        OdsCode::parse(s).unwrap()
    }

    #[test]
    fn only_active_rows_are_prison_healthcare_units() {
        let register = PrisonRegister::parse(
            "nomis_prison_id,name,active,gp_practice_ods_codes\n\
             BLI,Bristol (HMP & YOI),true,Y02307\n\
             KTI,Kennet (HMP),false,Y03175\n\
             FMI,Feltham (HMP),true,Y06017\n\
             FYI,Feltham (HMYOI),true,Y06017\n",
        )
        .unwrap();
        assert!(register.is_prison_healthcare(&ods("Y02307")));
        assert!(!register.is_prison_healthcare(&ods("Y03175")), "not active");
        assert_eq!(register.prisons(&ods("Y03175")).len(), 1);
        assert!(register.is_prison_healthcare(&ods("Y06017")));
        assert_eq!(register.prisons(&ods("Y06017")).len(), 2);
        assert!(
            !register.is_prison_healthcare(&ods("A99001")),
            "not a prison"
        );
        assert_eq!(register.active_units(), 2);
    }

    #[test]
    fn a_register_line_that_does_not_fit_fails_the_load() {
        for bad in [
            "nomis_prison_id,name,active\nBLI,Bristol,true\n",
            "nomis_prison_id,name,active,gp_practice_ods_codes\nBLI,Bristol,yes,Y02307\n",
            "nomis_prison_id,name,active,gp_practice_ods_codes\nBLI,Bristol,true,y02307\n",
            "nomis_prison_id,name,active,gp_practice_ods_codes\nBLI,\"Bristol, HMP\",true,Y02307\n",
            "nomis_prison_id,name,active,gp_practice_ods_codes\nBLI,Bristol,true\n",
        ] {
            assert!(PrisonRegister::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_shipped_register_loads_with_its_active_and_inactive_rows() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("directory/prison-register.csv");
        let register = PrisonRegister::load(&path).unwrap();
        // HMP Bristol (the sample prison) and Eastwood Park are active; Kennet is not.
        assert!(register.is_prison_healthcare(&ods("Y02307")));
        assert!(register.is_prison_healthcare(&ods("Y03193")));
        assert!(!register.is_prison_healthcare(&ods("Y03175")));
        assert!(register.active_units() > 100);
    }
}
