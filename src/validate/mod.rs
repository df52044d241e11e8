//! Profile validation: StructureDefinitions from `profiles/` and the package folders, compiled at
//! start-up, checked against resources on the lossless JSON tree.
