package pgcdc

const helperEnv = "TIERCACHE_PGCDC_HELPER"
