package slomaps

// AccountSpec is the compiled slo_account.h, for the layout test.
var AccountSpec = loadAccount
