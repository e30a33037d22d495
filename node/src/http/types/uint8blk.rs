//! uint8blk's HTTP package: the voxel endpoints, 8-bit grayscale.

use super::{TypeApi, voxels};
use crate::http::AppState;
use axum::Router;
use dvid_store::Instance;
use dvid_store::diff::VersionDiff;
use serde_json::{Map, Value};

pub struct Uint8Blk;

pub static UINT8BLK: Uint8Blk = Uint8Blk;

impl TypeApi for Uint8Blk {
    fn name(&self) -> &'static str {
        "uint8blk"
    }

    fn type_url(&self) -> &'static str {
        "github.com/janelia-flyem/dvid/datatype/imageblk/uint8.go"
    }

    fn type_version(&self) -> &'static str {
        "0.2"
    }

    fn compression(&self, inst: &Instance) -> String {
        voxels::compression(inst)
    }

    fn extended(&self, inst: &Instance, _levels: u32) -> Value {
        voxels::extended(inst, "uint8", "uint8", true)
    }

    fn routes(&self) -> Router<AppState> {
        voxels::routes().merge(voxels::specific_blocks_route())
    }

    fn help(&self) -> &'static [&'static str] {
        &[include_str!("voxels.txt")]
    }

    fn openapi(&self) -> &'static [&'static str] {
        &[include_str!("voxels.json")]
    }

    fn diff_fields(&self, d: &VersionDiff, out: &mut Map<String, Value>) {
        voxels::diff_fields(d, out)
    }
}
