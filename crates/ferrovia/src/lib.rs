//! Ferrovia facade.
